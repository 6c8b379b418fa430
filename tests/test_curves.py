"""The shape of loss curves (cllora.curves), hand-computed: overfitting, fluctuation, local gap."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cllora import curves


def test_overfit_is_final_minus_minimum_with_the_first_round_of_it():
    assert curves.overfit([(0, 3.0), (1, 2.5), (2, 2.4), (3, 2.4), (4, 2.6)]) == (pytest.approx(0.2), 2)
    assert curves.overfit([(0, 3.0), (1, 2.5), (2, 2.4)]) == (0.0, 2)  # still falling: no overfitting
    value, best = curves.overfit([])
    assert math.isnan(value) and best is None


def test_fluctuation_is_the_mean_absolute_second_difference_after_round_0():
    zigzag = [(0, 9.0), (1, 3.0), (2, 3.2), (3, 3.0), (4, 3.2)]
    # rounds 1..4: second differences (3.0 - 2*3.2 + 3.2... ) = 3.0-6.4+3.0=-0.4, 3.2-6.0+3.2=0.4
    assert curves.fluctuation(zigzag) == pytest.approx(0.4)
    # a straight descent and a steady rise after a minimum barely count; round 0's drop never does
    line = [(0, 9.0)] + [(r, 3.0 - 0.1 * r) for r in range(1, 11)]
    assert curves.fluctuation(line) == pytest.approx(0.0, abs=1e-12)
    vee = [(r, 3.0 - 0.1 * r) for r in range(0, 6)] + [(r, 2.5 + 0.1 * (r - 5)) for r in range(6, 11)]
    assert curves.fluctuation(vee) == pytest.approx(0.2 / 8)  # one kink of 0.2 over 8 second differences


def test_fluctuation_needs_every_round_evaluated_and_three_rounds():
    assert math.isnan(curves.fluctuation([(0, 3.0), (1, 2.9), (2, 2.8)]))
    assert math.isnan(curves.fluctuation([(0, 3.0), (2, 2.9), (4, 2.8), (6, 2.7)]))  # eval_every = 2
    assert not math.isnan(curves.fluctuation([(0, 3.0), (1, 2.9), (2, 2.7), (3, 2.8)]))


def test_local_gap_is_the_range_of_local_losses_first_and_last_round():
    rows = [{"round": 0, "client_id": c, "local_model_test_loss": None} for c in range(3)]
    rows += [{"round": 1, "client_id": c, "local_model_test_loss": v} for c, v in enumerate([3.0, 3.5, 4.0])]
    rows += [{"round": 2, "client_id": c, "local_model_test_loss": v} for c, v in enumerate([2.9, 3.0, 3.2])]
    gap = curves.local_gap(rows)
    assert gap["gap_first"] == pytest.approx(1.0) and gap["gap_last"] == pytest.approx(0.3)
    assert gap["gap_closed"] == pytest.approx(0.7) and (gap["first_round"], gap["last_round"]) == (1, 2)
    assert all(np.isnan(v) for v in curves.local_gap(rows[:3]).values())


def test_since_start_subtracts_round_0_and_needs_it():
    assert curves.since_start([(0, 3.0), (1, 2.5), (2, 2.75)]) == [(0, 0.0), (1, -0.5), (2, -0.25)]
    assert curves.since_start([(1, 2.5), (2, 2.75)]) == []
    assert curves.since_start([(0, float("nan")), (1, 2.5)]) == []


def test_late_trend_is_the_slope_over_the_last_half_of_the_rounds():
    rising = [(r, 3.0 - 0.1 * r) for r in range(5)] + [(r, 2.6 + 0.05 * (r - 4)) for r in range(5, 11)]
    assert curves.late_trend(rising) == pytest.approx(0.05)  # rounds 5..10 only: the early descent is out
    assert curves.late_trend([(r, 3.0 - 0.1 * r) for r in range(11)]) == pytest.approx(-0.1)
    assert math.isnan(curves.late_trend([(0, 3.0), (2, 2.9), (4, 2.8), (6, 2.7)]))  # eval_every = 2
    assert math.isnan(curves.late_trend([(0, 3.0), (1, 2.9), (2, 2.8)]))  # a window of 2 rounds
    assert math.isnan(curves.late_trend([]))


def _flat_noisy_curves(seeds: int, rounds: int, sigma: float, rng) -> list[list[tuple[int, float]]]:
    return [[(0, 4.0)] + [(r, 3.5 + sigma * rng.standard_normal()) for r in range(1, rounds + 1)]
            for _ in range(seeds)]


def test_calibration_on_flat_noisy_curves_overfit_is_noise_and_late_trend_is_not():
    """Simulated null: curves that only go up and down around a plateau (no trend). Overfitting
    (final − min) is then positive, about what overfit_from_noise predicts from the fluctuation;
    the late trend's 95 % t-interval over 3 seeds covers 0 at the nominal rate (it would fail if
    the trend over-claimed a rise from noise)."""
    from cllora.analysis.stats import t_interval
    rng = np.random.default_rng(1)
    experiments = [_flat_noisy_curves(3, 10, 0.08, rng) for _ in range(2000)]
    runs = [c for e in experiments for c in e]
    overfit = np.mean([curves.overfit(c)[0] for c in runs])
    fluct = np.mean([curves.fluctuation(c) for c in runs])
    assert overfit > 0.1  # no trend, yet clearly "overfitting" by final − min
    assert curves.overfit_from_noise(fluct, 10) == pytest.approx(overfit, rel=0.03)
    assert curves.overfit_from_noise(fluct, 10) / fluct == pytest.approx(0.79, abs=0.01)
    claims = 0
    for e in experiments:
        _, low, high = t_interval([curves.late_trend(c) for c in e])
        claims += low > 0 or high < 0
    assert claims / len(experiments) <= 0.065  # 5 % nominal, with room for 2000 draws' noise


def test_late_trend_finds_a_rise_that_the_noise_hides_in_single_rounds():
    from cllora.analysis.stats import t_interval
    rng = np.random.default_rng(2)
    rising = [[(r, v + (0.03 * (r - 5) if r >= 5 else 0.0)) for r, v in c]
              for c in _flat_noisy_curves(5, 10, 0.02, rng)]
    _, low, _ = t_interval([curves.late_trend(c) for c in rising])
    assert low > 0


def test_overfit_from_noise_needs_a_fluctuation_and_three_rounds():
    assert math.isnan(curves.overfit_from_noise(float("nan"), 10))
    assert math.isnan(curves.overfit_from_noise(0.1, 2))
    assert curves.overfit_from_noise(0.0, 10) == 0.0
