"""Round-to-round change of the global test loss by clients sampled again (cllora.analysis.sampling),
on hand-built run records."""

from __future__ import annotations

from pathlib import Path

import pytest

from cllora.analysis.plans import Sweep
from cllora.analysis.runs import RunRecord
from cllora.analysis.sampling import repeat_rows, repeated_changes


def run(seed: int, losses: list[float], picks: list[tuple[int, ...]], clients: int = 4, per_round: int = 2,
        folder: str = "s") -> RunRecord:
    rows = [{"round": r, "global_test_loss": v} for r, v in enumerate(losses)]
    table = [{"round": r, "client_id": c, "participated": c in pick}
             for r, pick in enumerate(picks, start=1) for c in range(clients)]
    table += [{"round": 0, "client_id": c, "participated": True} for c in range(clients)]  # round 0: evaluation only
    cfg = {"seed": seed, "clients": clients, "clients_per_round": per_round, "rounds": len(picks)}
    return RunRecord(f"{folder}/r{seed}", Path("."), cfg, {}, rows, table, None, None,
                     sweep=Sweep(folder, folder, "study", None))


def test_changes_are_grouped_by_the_clients_the_previous_round_also_sampled():
    r = run(0, [4.0, 3.0, 2.9, 3.2, 3.1], [(0, 1), (2, 3), (2, 3), (1, 3)])
    assert repeated_changes(r) == [(2, 0, pytest.approx(-0.1)), (3, 2, pytest.approx(0.3)),
                                   (4, 1, pytest.approx(-0.1))]


def test_every_client_every_round_has_no_sampling_to_group():
    assert repeated_changes(run(0, [4.0, 3.0, 2.9], [(0, 1), (0, 1)], clients=2, per_round=2)) == []


def test_rows_count_seed_round_events_once_across_conditions():
    """Two conditions of seed 0 share their sampling: one (seed, round) event, two changes."""
    a = run(0, [4.0, 3.0, 3.2], [(0, 1), (0, 1)])
    b = run(0, [4.0, 3.1, 3.5], [(0, 1), (0, 1)])
    c = run(1, [4.0, 3.0, 2.8], [(0, 1), (2, 3)])
    rows = repeat_rows([a, b, c])
    assert rows == [{"sweep": "s", "repeated": 0, "events": 1, "changes": 1, "mean_change": pytest.approx(-0.2),
                     "mean_abs_change": pytest.approx(0.2)},
                    {"sweep": "s", "repeated": 2, "events": 1, "changes": 2, "mean_change": pytest.approx(0.3),
                     "mean_abs_change": pytest.approx(0.3)}]


def test_a_diverged_round_is_left_out():
    r = run(0, [4.0, 3.0, float("inf"), 3.1], [(0, 1), (0, 1), (2, 3)])
    assert repeated_changes(r) == []
