"""Noise-aware fairness statistics (cllora.metrics) on hand-computed values and synthetic clients
whose true losses are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cllora.metrics import (
    class_losses,
    client_standard_errors,
    corrected_fairness,
    excess_variance,
    fairness_noise,
    gini,
    jain_index,
    per_text_losses,
    pooled_standard_errors,
    split_se2,
    split_spread,
    spread_terms,
)


def test_per_text_and_class_losses_by_hand():
    sums, tokens = [2.0, 6.0, 9.0, 0.0], [1, 2, 3, 0]
    assert per_text_losses(sums, tokens)[:3].tolist() == [2.0, 3.0, 3.0]
    assert math.isnan(per_text_losses(sums, tokens)[3])
    # class 0 = texts 0 and 2: (2 + 9) / (1 + 3); class 1 = text 1; class 2 empty
    out = class_losses(sums, tokens, [0, 1, 0, 1], 3)
    assert out[:2] == [11 / 4, 3.0] and math.isnan(out[2])


def test_standard_error_by_hand():
    # client 0: per-text losses 1 and 3 of one token each: equal weights, SE^2 = m/(m-1) sum w^2 d^2 = 1
    # client 1: one text of 4 tokens -> the pooled scale c = sum w^2 d^2 / sum w^2 h (1 - 2w + sum w^2)
    #   = 0.5 / (2 * 0.25 * 1 * 0.5) = 2 (client 0) times h(4) = 4^-0.5: SE^2 = 1
    # client 2: no texts -> NaN
    se = client_standard_errors([1.0, 3.0, 5.0], [1, 1, 4], [0, 0, 1], 3)
    assert se[0] == pytest.approx(1.0) and se[1] == pytest.approx(1.0)
    assert math.isnan(se[2])


def test_standard_errors_pooled_from_each_clients_spread_by_hand():
    # what Flower clients send: the same clients as above, one per process, and one that did not reply
    assert split_spread([1.0, 3.0], [1, 1]) == pytest.approx((1.0, 0.5, 2, 0.5, 0.25))
    se = pooled_standard_errors([split_spread([1.0, 3.0], [1, 1]), split_spread([5.0], [4]), None])
    assert se[0] == pytest.approx(1.0) and se[1] == pytest.approx(1.0) and math.isnan(se[2])
    assert math.isnan(pooled_standard_errors([split_spread([5.0], [4])])[0])  # nothing to pool


def test_standard_error_is_token_weighted():
    # texts of 1 and 3 tokens with token-mean losses 0 and 4: L = 3, w = (1/4, 3/4), d = (-3, 1),
    # h = (1, 3^-0.5). sum w^2 d^2 = 9/16 + 9/16 = 1.125; sum w^2 = 0.625;
    # sum w^2 h = 1/16 + 9/16 * 0.57735 = 0.387260; sum w^2 h (1 - 2w + 0.625) = 1/16 * 1.125 + 9/16 * 0.57735 * 0.125
    # = 0.1109074; SE^2 = 1.125 * 0.387260 / 0.1109074 = 3.92818 (the delta method's 2 * 1.125 = 2.25 is 43 % short)
    se = client_standard_errors([0.0, 12.0], [1, 3], [0, 0], 1)
    assert se[0] ** 2 == pytest.approx(3.92818, rel=1e-5)


def test_standard_error_is_unbiased_under_its_model_with_very_unequal_tokens():
    # fixed token counts 6, 40, 127 (and 6, 127): per-text losses normal around 0 with variance
    # h(n) = n^-0.5; the true variance of the token-weighted loss is sum w^2 h. The delta method's
    # m/(m-1) sum w^2 d^2 (the formula before) is far below it
    rng = np.random.default_rng(3)
    for tokens in ([6.0, 40.0, 127.0], [6.0, 127.0]):
        n = np.array(tokens)
        w = n / n.sum()
        truth = float(np.sum(w ** 2 * n ** -0.5))
        ell = rng.normal(0.0, 1.0, (200_000, len(n))) * n ** -0.25
        new = split_se2(ell, np.broadcast_to(n, ell.shape)).mean()
        old = (len(n) / (len(n) - 1) * spread_terms(ell, np.broadcast_to(n, ell.shape))[0]).mean()
        assert new == pytest.approx(truth, rel=0.01)
        assert old < 0.8 * truth


def test_jain_and_gini_by_hand():
    assert jain_index([2.0, 2.0, 2.0]) == pytest.approx(1.0)
    assert jain_index([1.0, 3.0]) == pytest.approx(16 / 20)
    assert gini([5.0, 5.0, 5.0]) == pytest.approx(0.0)
    assert gini([0.0, 0.0, 0.0, 1.0]) == pytest.approx(0.75)  # sum|xi-xj| = 6, 2 N^2 mean = 8
    assert gini([1.0, 3.0]) == pytest.approx(0.25)  # |1-3| * 2 / (2 * 4 * 2)


def test_noise_correction_by_hand_is_not_floored():
    # observed losses 1, 3: population variance 1; SE 1 each: (N-1)/N * mean SE^2 = 0.5
    assert excess_variance([1.0, 3.0], [1.0, 1.0]) == pytest.approx(0.5)
    assert excess_variance([1.0, 1.2], [1.0, 1.0]) == pytest.approx(0.01 - 0.5)  # negative, kept
    assert math.isnan(excess_variance([1.0], [float("nan")]))
    # from per-text losses as split_losses.npz holds them: the clients of test_standard_error_by_hand
    # (losses 2 and 5, SE 1 and 1): var_pop 2.25 - 1/2 * 1 = 1.75; the empty client is left out
    assert corrected_fairness([1.0, 3.0, 5.0], [1, 1, 4], [0, 0, 1], 3) == pytest.approx(1.75)


def test_fairness_noise_columns():
    out = fairness_noise([math.log(2.0), math.log(4.0)], [0.1, 0.3])
    assert out["jain"] == pytest.approx(36 / 40)  # perplexities 2 and 4
    assert out["gini"] == pytest.approx(2 * 2 / (2 * 4 * 3))
    assert out["se_mean"] == pytest.approx(0.2)
    spread = np.var([math.log(2.0), math.log(4.0)])
    assert out["var_corrected"] == pytest.approx(spread - 0.5 * (0.01 + 0.09) / 2)
    assert fairness_noise([1.0, 1.01], [0.1, 0.3])["var_corrected"] < 0  # not floored
