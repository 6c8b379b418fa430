"""Why a global curve swings from round to round: its change by how many of a round's clients were
also sampled the round before (pure; from run records, no model code).

With a few clients a round, each trained for several local epochs on a few texts, the global model
leans toward the round's clients. When a round samples a client the previous round had, that
client's texts are trained on for twice the local epochs in a row, and the global test loss can
jump. Runs of one seed share their client sampling (`engine.experiment.sample_clients` seeds it by
seed and round), so conditions of one seed are not independent events: `events` counts distinct (seed, round) pairs.
"""

from __future__ import annotations

import math
from typing import Iterable

from cllora.analysis.runs import RunRecord


def sampled_clients(run: RunRecord) -> dict[int, frozenset[str]]:
    """The clients that took part in each trained round, from clients.csv."""
    out: dict[int, set[str]] = {}
    for row in run.clients:
        if int(row.get("round") or 0) >= 1 and str(row.get("participated")).lower() in ("1", "true"):
            out.setdefault(int(row["round"]), set()).add(str(row["client_id"]))
    return {r: frozenset(c) for r, c in out.items()}


def repeated_changes(run: RunRecord) -> list[tuple[int, int, float]]:
    """(round r, clients of round r also sampled in r − 1, L_r − L_{r−1}) for rounds r ≥ 2 with
    both losses finite; empty unless the run samples fewer clients a round than it has."""
    cfg = run.config
    if not cfg.get("clients_per_round") or cfg["clients_per_round"] >= cfg.get("clients", 0):
        return []
    loss = {int(r["round"]): r.get("global_test_loss") for r in run.rounds}
    clients = sampled_clients(run)
    return [(r, len(clients[r] & clients[r - 1]), loss[r] - loss[r - 1]) for r in sorted(clients)
            if r - 1 in clients and all(isinstance(loss.get(x), float) and math.isfinite(loss[x]) for x in (r, r - 1))]


def repeat_rows(runs: Iterable[RunRecord]) -> list[dict]:
    """Per sweep folder and number of repeated clients: events (distinct seed, round pairs), changes
    (one per run and round), the mean change and the mean |change| of the global test loss."""
    groups: dict[tuple[str, int], list[tuple[int, int, float]]] = {}
    for run in runs:
        folder = run.sweep.folder if run.sweep else run.name
        for rnd, repeated, change in repeated_changes(run):
            groups.setdefault((folder, repeated), []).append((int(run.config.get("seed", 0)), rnd, change))
    return [{"sweep": folder, "repeated": repeated, "events": len({(s, r) for s, r, _ in items}),
             "changes": len(items), "mean_change": sum(c for *_, c in items) / len(items),
             "mean_abs_change": sum(abs(c) for *_, c in items) / len(items)}
            for (folder, repeated), items in sorted(groups.items())]
