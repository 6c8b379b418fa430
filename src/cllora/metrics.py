"""Evaluation statistics (pure numpy): token-weighted loss, perplexity, per-text and per-class
losses, fairness across clients, and the sampling noise of per-client losses (standard errors,
noise-corrected variance, Jain, Gini)."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def token_weighted_loss(loss_sums: Sequence[float], token_counts: Sequence[int]) -> float:
    """Mean loss per predicted token over batches: sum of per-token losses / number of tokens."""
    tokens = float(np.sum(token_counts))
    if tokens <= 0:
        raise ValueError("token_weighted_loss needs at least one predicted token, got 0")
    return float(np.sum(loss_sums) / tokens)


def client_losses(loss_sums: np.ndarray, tokens: np.ndarray, owner: np.ndarray, num_clients: int) -> np.ndarray:
    """Each client's token-weighted loss from per-text loss sums, token counts and owners (NaN for
    a client with no scored token): the one per-client loss of every evaluation."""
    return np.array([loss_sums[owner == c].sum() / tokens[owner == c].sum() if tokens[owner == c].sum() > 0
                     else np.nan for c in range(num_clients)])


def perplexity(loss: float) -> float:
    """exp(loss), or inf where that overflows."""
    return math.exp(loss) if loss < 700 else math.inf


def fairness(losses: Sequence[float]) -> dict[str, float]:
    """Spread of test loss across clients; `var` is the study's fairness (population variance).

    Lower is fairer. `worst10` is the mean of the worst (highest) 10 % of clients, at least one.
    """
    values = np.asarray([x for x in losses if math.isfinite(x)], dtype=np.float64)
    if values.size == 0:
        nan = float("nan")
        return {"mean": nan, "var": nan, "std": nan, "min": nan, "max": nan, "worst10": nan}
    worst = np.sort(values)[::-1][: max(1, int(math.ceil(0.1 * values.size)))]
    return {
        "mean": float(values.mean()),
        "var": float(values.var()),
        "std": float(values.std()),
        "min": float(values.min()),
        "max": float(values.max()),
        "worst10": float(worst.mean()),
    }


# ---------------------------------------------------------------- per-text losses and noise

def per_text_losses(loss_sums: Sequence[float], token_counts: Sequence[int]) -> np.ndarray:
    """Token-mean loss of each text (its summed loss / its predicted tokens; NaN for none)."""
    sums = np.asarray(loss_sums, dtype=np.float64)
    tokens = np.asarray(token_counts, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tokens > 0, sums / np.where(tokens > 0, tokens, 1.0), np.nan)


def class_losses(loss_sums: Sequence[float], token_counts: Sequence[int], classes: Sequence[int],
                 num_classes: int) -> list[float]:
    """Token-weighted loss of the texts of each class 0..num_classes-1 (NaN for a class without
    predicted tokens)."""
    sums, tokens = np.asarray(loss_sums, np.float64), np.asarray(token_counts, np.float64)
    classes = np.asarray(classes)
    out = []
    for c in range(num_classes):
        n = tokens[classes == c].sum()
        out.append(float(sums[classes == c].sum() / n) if n > 0 else float("nan"))
    return out


TEXT_NOISE_EXPONENT = 0.5
"""Working model of a text's sampling noise: Var(ℓ_i) ∝ n_i^-0.5 (ℓ_i its token-mean loss, n_i its
scored tokens). Fitted on the published runs' per-text losses (results/*/*/*/test_losses.npz: the
mean squared deviation of ℓ from its run's token-weighted loss falls as n^-0.53 from 10 to 127
tokens); between a text-level spread (exponent 0) and independent tokens (exponent 1)."""

SE_ESTIMATOR = "weighted residuals, Var(text) ~ tokens^-0.5"
"""Names the standard-error formula in each run's config.json ("se_estimator"): runs without it
used the delta method's m/(m-1) Σ w² d² (cllora.analysis.fairness labels them legacy)."""


def client_standard_errors(loss_sums: Sequence[float], token_counts: Sequence[int],
                           owners: Sequence[int], num_clients: int) -> np.ndarray:
    """Standard error of each client's token-weighted loss L_k = Σ s_i / Σ n_i over its texts.

    Sampling model: a client's split is m texts drawn from the client's own texts; text i has n_i
    scored tokens and token-mean loss ℓ_i = s_i / n_i; its true loss μ_k is the token-weighted
    loss of that population. With w_i = n_i / Σ n, L_k = Σ w_i ℓ_i. Working model given the
    token counts: ℓ_i = μ_k + e_i, independent, Var(e_i) = c_k h(n_i), h(n) = n^-TEXT_NOISE_EXPONENT.
    Then Var(L_k) = c_k Σ w_i² h_i, and the residuals d_i = ℓ_i - L_k have
        E[Σ w_i² d_i²] = c_k Σ_j w_j² h_j (1 - 2 w_j + Σ_i w_i²),
    so the unbiased standard error is
        SE_k² = Σ w_i² d_i² · Σ w_j² h_j / Σ w_j² h_j (1 - 2 w_j + Σ w_i²).
    With equal token counts this is m/(m-1) Σ w_i² d_i² (the ratio estimator's delta-method
    variance, used before); with unequal ones that formula under-estimates, because the heavy
    text's residual is shrunk towards L_k by its own weight (24-43 % too small for 2-5 texts on the
    published runs' texts). At m = 2 the client's texts say only E[(ℓ_1 - ℓ_2)²] = c (h_1 + h_2):
    how that spread divides between a short and a long text, which the weights need, is not
    identifiable from them and comes from h. A client with one text gets ĉ h(n) with ĉ pooled
    over the clients with >= 2 texts (Σ_k Σ w²d² / Σ_k Σ w² h (1 - 2w + Σw²)). NaN for a client
    without texts (or nothing to pool). docs/method.md states the bias measured by simulation.
    """
    sums, tokens = np.asarray(loss_sums, np.float64), np.asarray(token_counts, np.float64)
    owners = np.asarray(owners)
    return pooled_standard_errors([split_spread(sums[owners == k], tokens[owners == k])
                                   for k in range(num_clients)])


def spread_terms(losses: np.ndarray, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Σ w_i² d_i², Σ w_i² h_i, Σ w_i² h_i (1 - 2 w_i + Σ w²)) along the last axis of per-text
    token-mean losses and (positive) token counts: the three sums of `client_standard_errors`.
    Vectorised: losses and tokens of shape (..., m) give arrays of shape (...)."""
    ell, n = np.asarray(losses, np.float64), np.asarray(tokens, np.float64)
    w = n / n.sum(axis=-1, keepdims=True)
    d = ell - np.sum(w * ell, axis=-1, keepdims=True)
    h = n ** -TEXT_NOISE_EXPONENT
    sum_w2 = np.sum(w ** 2, axis=-1, keepdims=True)
    return (np.sum(w ** 2 * d ** 2, axis=-1), np.sum(w ** 2 * h, axis=-1),
            np.sum(w ** 2 * h * (1 - 2 * w + sum_w2), axis=-1))


def split_se2(losses: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """SE² of the token-weighted loss of splits of >= 2 texts (last axis), from their own texts
    (`client_standard_errors` gives the formula). Vectorised as `spread_terms`."""
    resid, h_sum, h_den = spread_terms(losses, tokens)
    return resid * h_sum / h_den


def split_spread(loss_sums: Sequence[float], token_counts: Sequence[int]) -> tuple[float, float, int, float, float]:
    """What one client's own texts say about its loss's noise, for `pooled_standard_errors`:
    (SE² for m >= 2 texts else NaN, Σ w_i² d_i², m, Σ w_i² h_i, Σ w_i² h_i (1 - 2 w_i + Σ w²)).
    A Flower client sends these five numbers, so the server pools exactly as the in-process
    engine does."""
    sums, tokens = np.asarray(loss_sums, np.float64), np.asarray(token_counts, np.float64)
    keep = tokens > 0
    sums, tokens = sums[keep], tokens[keep]
    m = len(tokens)
    if m == 0:
        return float("nan"), 0.0, 0, float("nan"), float("nan")
    resid, h_sum, h_den = (float(x) for x in spread_terms(sums / tokens, tokens))
    se2 = resid * h_sum / h_den if m >= 2 else float("nan")
    return se2, resid, m, h_sum, h_den


def pooled_standard_errors(spreads: Sequence[tuple[float, float, int, float, float] | None]) -> np.ndarray:
    """Each client's standard error from its `split_spread` (None: unknown → NaN); one-text clients
    get the noise scale pooled over the clients with >= 2 texts times their h(n) (see
    `client_standard_errors`)."""
    known = [s for s in spreads if s is not None and s[2] >= 2]
    resid, den = sum(s[1] for s in known), sum(s[4] for s in known)
    se2 = np.full(len(spreads), np.nan)
    for k, spread in enumerate(spreads):
        if spread is None or spread[2] == 0:
            continue
        se2[k] = spread[0] if spread[2] >= 2 else (resid / den * spread[3] if den > 0 else np.nan)
    return np.sqrt(se2)


def excess_variance(losses: Sequence[float], standard_errors: Sequence[float]) -> float:
    """The noise-corrected variance of the clients' *true* losses: var_pop(L̂) − (N − 1)/N · mean(SE²)
    over the clients with a finite loss and standard error (method of moments, as τ² in a
    random-effects meta-analysis: with L̂_k = μ_k + e_k, independent e_k of variance SE_k²,
    E[var_pop(L̂)] = var_pop(μ) + (N − 1)/N · mean(SE²)). NOT floored: it can be negative, so that
    its means over rounds and seeds stay unbiased (a floor at 0 biases it upwards, more so the
    noisier the splits); floor it only to draw it. NaN when no client has both."""
    loss, se = np.asarray(losses, np.float64), np.asarray(standard_errors, np.float64)
    ok = np.isfinite(loss) & np.isfinite(se)
    n = int(ok.sum())
    if n == 0:
        return float("nan")
    return float(np.var(loss[ok])) - (n - 1) / n * float(np.mean(se[ok] ** 2))


def corrected_fairness(losses: Sequence[float], tokens: Sequence[int], owners: Sequence[int],
                       num_clients: int) -> float:
    """The noise-corrected fairness variance of one evaluation from its per-text token-mean
    losses, token counts and owners (as split_losses.npz holds them): `excess_variance` of the
    clients' token-weighted losses with `client_standard_errors`."""
    ell, n = np.asarray(losses, np.float64), np.asarray(tokens, np.float64)
    ok = np.isfinite(ell) & (n > 0)
    sums = np.where(ok, ell * n, 0.0)
    n = np.where(ok, n, 0.0)
    return excess_variance(client_losses(sums, n, np.asarray(owners), num_clients),
                           client_standard_errors(sums, n, owners, num_clients))


def jain_index(values: Sequence[float]) -> float:
    """Jain's fairness index (Σx)² / (N Σx²) of positive values: 1 when all equal, 1/N at worst."""
    x = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    if x.size == 0 or not np.any(x):
        return float("nan")
    return float(x.sum() ** 2 / (x.size * np.sum(x ** 2)))


def gini(values: Sequence[float]) -> float:
    """Gini coefficient Σ_i Σ_j |x_i - x_j| / (2 N² mean) of non-negative values: 0 when all equal."""
    x = np.sort(np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64))
    if x.size == 0 or x.mean() <= 0:
        return float("nan")
    n = x.size
    ranks = np.arange(1, n + 1)
    return float(np.sum((2 * ranks - n - 1) * x) / (n * n * x.mean()))


def fairness_noise(losses: Sequence[float], standard_errors: Sequence[float]) -> dict[str, float]:
    """The fairness statistics beside the study's variance: noise-corrected variance (not floored),
    mean standard error, and Jain's index and the Gini coefficient of the clients' perplexities."""
    loss = np.asarray(losses, np.float64)
    se = np.asarray(standard_errors, np.float64)
    ppl = [perplexity(x) for x in loss if math.isfinite(x)]
    return {
        "var_corrected": excess_variance(loss, se),
        "se_mean": float(np.mean(se[np.isfinite(se)])) if np.isfinite(se).any() else float("nan"),
        "jain": jain_index(ppl),
        "gini": gini(ppl),
    }
