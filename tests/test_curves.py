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
