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


def client_standard_errors(loss_sums: Sequence[float], token_counts: Sequence[int],
                           owners: Sequence[int], num_clients: int) -> np.ndarray:
    """Standard error of each client's token-weighted loss L_k = Σ s_i / Σ n_i over its texts.

    Texts are the sampling units (tokens within a text are correlated). With w_i = n_i / Σ n_i and
    ℓ_i = s_i / n_i the text's token-mean loss, L_k = Σ w_i ℓ_i. For a client with m >= 2 texts the
    ratio estimator's linearised (delta-method) variance is used:
        SE_k² = m / (m - 1) · Σ w_i² (ℓ_i - L_k)².
    A client with one text cannot estimate its own spread: it gets σ̂² · Σ w_i² with σ̂² the pooled
    within-client variance of per-text losses (Σ_k Σ_i (ℓ_i - L_k)² / (texts - clients with >= 2
    texts), over the clients with >= 2 texts). NaN for a client without texts (or nothing to pool).
    """
    sums, tokens = np.asarray(loss_sums, np.float64), np.asarray(token_counts, np.float64)
    owners = np.asarray(owners)
    return pooled_standard_errors([split_spread(sums[owners == k], tokens[owners == k])
                                   for k in range(num_clients)])


def split_spread(loss_sums: Sequence[float], token_counts: Sequence[int]) -> tuple[float, float, int, float]:
    """What one client's own texts say about its loss's noise, for `pooled_standard_errors`:
    (SE² for m >= 2 texts else NaN, Σ (ℓ_i - L)², m, Σ w_i²). A Flower client sends these four
    numbers, so the server pools exactly as the in-process engine does."""
    sums, tokens = np.asarray(loss_sums, np.float64), np.asarray(token_counts, np.float64)
    keep = tokens > 0
    sums, tokens = sums[keep], tokens[keep]
    m = len(tokens)
    if m == 0:
        return float("nan"), 0.0, 0, float("nan")
    ell, w = sums / tokens, tokens / tokens.sum()
    dev = ell - float(np.sum(w * ell))
    se2 = m / (m - 1) * float(np.sum(w ** 2 * dev ** 2)) if m >= 2 else float("nan")
    return se2, float(np.sum(dev ** 2)), m, float(np.sum(w ** 2))


def pooled_standard_errors(spreads: Sequence[tuple[float, float, int, float] | None]) -> np.ndarray:
    """Each client's standard error from its `split_spread` (None: unknown → NaN); one-text clients
    get the pooled within-client variance times their Σ w_i² (see `client_standard_errors`)."""
    known = [s for s in spreads if s is not None and s[2] >= 2]
    resid_ss, dof = sum(s[1] for s in known), sum(s[2] - 1 for s in known)
    se2 = np.full(len(spreads), np.nan)
    for k, spread in enumerate(spreads):
        if spread is None or spread[2] == 0:
            continue
        se2[k] = spread[0] if spread[2] >= 2 else (resid_ss / dof * spread[3] if dof > 0 else np.nan)
    return np.sqrt(se2)


def excess_variance(losses: Sequence[float], standard_errors: Sequence[float]) -> float:
    """var_pop(L̂) − (N − 1)/N · mean(SE²) over the clients with a finite loss and standard error,
    NOT floored: an unbiased estimate of var_pop(μ) that can be negative, so that its means over
    rounds and seeds stay unbiased (a floor at 0 biases it upwards, more so the noisier the splits).
    NaN when no client has both."""
    loss, se = np.asarray(losses, np.float64), np.asarray(standard_errors, np.float64)
    ok = np.isfinite(loss) & np.isfinite(se)
    n = int(ok.sum())
    if n == 0:
        return float("nan")
    return float(np.var(loss[ok])) - (n - 1) / n * float(np.mean(se[ok] ** 2))


def noise_corrected_variance(losses: Sequence[float], standard_errors: Sequence[float]) -> float:
    """Variance of the clients' *true* losses: the observed population variance minus what sampling
    noise adds to it, floored at 0 (method of moments, as τ² in a random-effects meta-analysis).

    With L̂_k = μ_k + e_k, independent e_k of variance SE_k², E[var_pop(L̂)] = var_pop(μ)
    + (N - 1)/N · mean(SE²); so var_pop(μ) ≈ max(0, var_pop(L̂) - (N - 1)/N · mean(SE²)), over the
    clients whose loss and standard error are both finite (NaN when none).
    """
    excess = excess_variance(losses, standard_errors)
    return excess if math.isnan(excess) else max(0.0, excess)


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
    """The fairness statistics beside the study's variance: noise-corrected variance, mean standard
    error, and Jain's index and the Gini coefficient of the clients' perplexities."""
    loss = np.asarray(losses, np.float64)
    se = np.asarray(standard_errors, np.float64)
    ppl = [perplexity(x) for x in loss if math.isfinite(x)]
    return {
        "var_corrected": noise_corrected_variance(loss, se),
        "se_mean": float(np.mean(se[np.isfinite(se)])) if np.isfinite(se).any() else float("nan"),
        "jain": jain_index(ppl),
        "gini": gini(ppl),
    }
