"""The published runs' final per-text (token-mean loss, tokens) pairs, each run centred on its
token-weighted loss (so runs of other models and conditions share one level, 3.5 nats): the
population the fairness simulations draw clients' texts from. The local experiment at the study
budget (OVERFIT_SWEEPS: 3 clients, 30 local epochs on ~33 texts by round 10) scores models that
have memorised their texts; its per-text losses are a population of their own, drawn from only
where a test asks for it (`overfit=True`), so a calibration does not change with the folder."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parents[1] / "results"
OVERFIT_SWEEPS = ("study-local-study",)


@lru_cache(maxsize=None)  # three pools: all, legacy, overfit
def published_pool(legacy: bool = False, overfit: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(losses, tokens) of every published run's test texts outside OVERFIT_SWEEPS (`overfit`: of
    those runs only); `legacy`: only the runs written before split_losses.npz (the runs whose legacy
    standard errors cllora.analysis.fairness corrects)."""
    losses, tokens = [], []
    for path in sorted(RESULTS.glob("*/*/*/test_losses.npz")):
        if legacy and (path.parent / "split_losses.npz").exists():
            continue
        if (path.relative_to(RESULTS).parts[0] in OVERFIT_SWEEPS) != overfit:
            continue
        with np.load(path) as d:
            ell, n = d["loss_final"].astype(float), d["tokens"].astype(float)
        keep = np.isfinite(ell) & (n > 0)
        losses.append(ell[keep] - np.sum(ell[keep] * n[keep]) / n[keep].sum())
        tokens.append(n[keep])
    assert len(losses) > (8 if overfit else 100)  # the published runs are there (9 overfitted ones)
    return 3.5 + np.concatenate(losses), np.concatenate(tokens)
