"""Evaluation statistics: token-weighted loss, perplexity, fairness across clients (pure numpy)."""

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
