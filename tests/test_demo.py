"""The demo's comparison figure: the noise-corrected fairness variance's change since round 0
(not the raw variance, which differs between partitions before any training), one seed said."""

from __future__ import annotations

import pytest

from cllora import records
from cllora.commands.demo import fairness_change, save_comparison, within_noise


def write_rounds(path, raw, corrected):
    path.mkdir(parents=True)
    rows = [{"round": r, "global_test_loss": 3.0 - 0.1 * r, "fairness_var": v, "fairness_var_corrected": c}
            for r, (v, c) in enumerate(zip(raw, corrected))]
    records.write_csv(path / "rounds.csv", records.ROUND_COLUMNS, rows)


def test_the_demo_plots_the_corrected_change_since_round_0(tmp_path):
    # length skew's raw variance is high from round 0 (small noisy splits); corrected, it falls
    write_rounds(tmp_path / "iid", raw=[0.02, 0.021, 0.022], corrected=[0.001, 0.002, 0.004])
    write_rounds(tmp_path / "length-a0.1", raw=[0.09, 0.08, 0.07], corrected=[0.010, 0.008, 0.007])
    rows = records.read_csv(tmp_path / "length-a0.1" / "rounds.csv")
    rounds, change = fairness_change(rows)
    assert rounds == [0, 1, 2] and change == pytest.approx([0.0, -0.002, -0.003])
    path = save_comparison(tmp_path, ["iid", "length-a0.1"])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_a_round_0_value_there_is_no_change_to_plot():
    assert fairness_change([{"round": 1, "fairness_var_corrected": 0.1}]) == ([], [])
    assert fairness_change([{"round": 0, "fairness_var_corrected": None}]) == ([], [])


def test_the_demo_says_so_when_every_round_is_within_the_noise(tmp_path):
    write_rounds(tmp_path / "iid", raw=[0.04, 0.035, 0.03], corrected=[0.0, 0.0, 0.0])
    write_rounds(tmp_path / "length-a0.1", raw=[0.05, 0.04, 0.04], corrected=[0.0, -0.004, -0.001])  # not floored
    runs = [records.read_csv(tmp_path / n / "rounds.csv") for n in ("iid", "length-a0.1")]
    assert within_noise(runs)
    runs[1][2]["fairness_var_corrected"] = 0.001  # one round above the noise: the lines speak
    assert not within_noise(runs) and not within_noise([[{"fairness_var_corrected": None}]])
    assert save_comparison(tmp_path, ["iid", "length-a0.1"]).is_file()
