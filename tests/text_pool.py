"""The published runs' final per-text (token-mean loss, tokens) pairs, each run centred on its
token-weighted loss (so runs of other models and conditions share one level, 3.5 nats): the
population the fairness simulations draw clients' texts from."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parents[1] / "results"


@lru_cache(maxsize=1)
def published_pool() -> tuple[np.ndarray, np.ndarray]:
    losses, tokens = [], []
    for path in sorted(RESULTS.glob("*/*/*/test_losses.npz")):
        with np.load(path) as d:
            ell, n = d["loss_final"].astype(float), d["tokens"].astype(float)
        keep = np.isfinite(ell) & (n > 0)
        losses.append(ell[keep] - np.sum(ell[keep] * n[keep]) / n[keep].sum())
        tokens.append(n[keep])
    assert len(losses) > 100  # the published runs are there
    return 3.5 + np.concatenate(losses), np.concatenate(tokens)
