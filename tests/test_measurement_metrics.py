"""Noise-aware fairness statistics (cllora.metrics) on hand-computed values and synthetic clients
whose true losses are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cllora.metrics import (
    class_losses,
    client_standard_errors,
    fairness_noise,
    gini,
    jain_index,
    noise_corrected_variance,
    per_text_losses,
    pooled_standard_errors,
    split_spread,
)


def test_per_text_and_class_losses_by_hand():
    sums, tokens = [2.0, 6.0, 9.0, 0.0], [1, 2, 3, 0]
    assert per_text_losses(sums, tokens)[:3].tolist() == [2.0, 3.0, 3.0]
    assert math.isnan(per_text_losses(sums, tokens)[3])
    # class 0 = texts 0 and 2: (2 + 9) / (1 + 3); class 1 = text 1; class 2 empty
    out = class_losses(sums, tokens, [0, 1, 0, 1], 3)
    assert out[:2] == [11 / 4, 3.0] and math.isnan(out[2])


def test_standard_error_by_hand():
    # client 0: per-text losses 1 and 3 of one token each: SE of a 2-sample mean = sqrt(2 / 2) = 1
    # client 1: one text -> pooled within-client variance (2, from client 0) times sum w^2 = 1
    # client 2: no texts -> NaN
    se = client_standard_errors([1.0, 3.0, 5.0], [1, 1, 4], [0, 0, 1], 3)
    assert se[0] == pytest.approx(1.0) and se[1] == pytest.approx(math.sqrt(2.0))
    assert math.isnan(se[2])


def test_standard_errors_pooled_from_each_clients_spread_by_hand():
    # what Flower clients send: the same clients as above, one per process, and one that did not reply
    assert split_spread([1.0, 3.0], [1, 1]) == (1.0, 2.0, 2, 0.5)
    se = pooled_standard_errors([split_spread([1.0, 3.0], [1, 1]), split_spread([5.0], [4]), None])
    assert se[0] == pytest.approx(1.0) and se[1] == pytest.approx(math.sqrt(2.0)) and math.isnan(se[2])
    assert math.isnan(pooled_standard_errors([split_spread([5.0], [4])])[0])  # nothing to pool


def test_standard_error_is_token_weighted():
    # texts of 1 and 3 tokens with token-mean losses 0 and 4: L = 3, w = (1/4, 3/4)
    # SE^2 = 2/1 * (1/16 * 9 + 9/16 * 1) = 2.25
    se = client_standard_errors([0.0, 12.0], [1, 3], [0, 0], 1)
    assert se[0] == pytest.approx(1.5)


def test_jain_and_gini_by_hand():
    assert jain_index([2.0, 2.0, 2.0]) == pytest.approx(1.0)
    assert jain_index([1.0, 3.0]) == pytest.approx(16 / 20)
    assert gini([5.0, 5.0, 5.0]) == pytest.approx(0.0)
    assert gini([0.0, 0.0, 0.0, 1.0]) == pytest.approx(0.75)  # sum|xi-xj| = 6, 2 N^2 mean = 8
    assert gini([1.0, 3.0]) == pytest.approx(0.25)  # |1-3| * 2 / (2 * 4 * 2)


def test_noise_correction_by_hand():
    # observed losses 1, 3: population variance 1; SE 1 each: (N-1)/N * mean SE^2 = 0.5
    assert noise_corrected_variance([1.0, 3.0], [1.0, 1.0]) == pytest.approx(0.5)
    assert noise_corrected_variance([1.0, 1.2], [1.0, 1.0]) == 0.0  # floored
    assert math.isnan(noise_corrected_variance([1.0], [float("nan")]))


def _draw_clients(rng, true_loss, noise_sd):
    """Per-text losses around each client's true loss; 1-6 texts of 20-200 tokens per client."""
    sums, tokens, owners = [], [], []
    for k, mu in enumerate(true_loss):
        m = int(rng.integers(1, 7))
        n = rng.integers(20, 200, size=m)
        ell = mu + rng.normal(0.0, noise_sd, size=m)
        sums += list(ell * n)
        tokens += list(n)
        owners += [k] * m
    sums, tokens, owners = map(np.asarray, (sums, tokens, owners))
    observed = np.array([sums[owners == k].sum() / tokens[owners == k].sum() for k in range(len(true_loss))])
    return observed, client_standard_errors(sums, tokens, owners, len(true_loss))


def test_equal_true_losses_correct_to_about_zero():
    rng = np.random.default_rng(1)
    observed_var, corrected = [], []
    for _ in range(300):
        observed, se = _draw_clients(rng, np.full(20, 3.0), noise_sd=0.4)
        observed_var.append(np.var(observed))
        corrected.append(noise_corrected_variance(observed, se))
    assert np.mean(observed_var) > 0.03  # pure noise looks like unfairness...
    # ...and the correction removes nearly all of it (the floor at 0 keeps the mean a little above 0)
    assert np.median(corrected) < 0.1 * np.mean(observed_var)
    assert np.mean(corrected) < 0.3 * np.mean(observed_var)


def test_true_spread_is_recovered():
    rng = np.random.default_rng(2)
    true_loss = 3.0 + np.linspace(-1.0, 1.0, 20)
    sigma2 = float(np.var(true_loss))  # population variance of the true losses, 0.3684
    corrected = [noise_corrected_variance(*_draw_clients(rng, true_loss, noise_sd=0.4)) for _ in range(400)]
    observed = [np.var(_draw_clients(rng, true_loss, noise_sd=0.4)[0]) for _ in range(400)]
    assert np.mean(observed) > sigma2 + 0.03  # noise inflates the raw variance
    assert np.mean(corrected) == pytest.approx(sigma2, rel=0.08)


def test_fairness_noise_columns():
    out = fairness_noise([math.log(2.0), math.log(4.0)], [0.1, 0.3])
    assert out["jain"] == pytest.approx(36 / 40)  # perplexities 2 and 4
    assert out["gini"] == pytest.approx(2 * 2 / (2 * 4 * 3))
    assert out["se_mean"] == pytest.approx(0.2)
    spread = np.var([math.log(2.0), math.log(4.0)])
    assert out["var_corrected"] == pytest.approx(spread - 0.5 * (0.01 + 0.09) / 2)
