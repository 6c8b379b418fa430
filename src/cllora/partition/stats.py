"""Heterogeneity statistics of a partition, its JSON form, and fitting a Dirichlet alpha to a statistic.

Pure numpy, like `cllora.partition.core`: one set of functions describes synthetic and natural partitions
alike, so their numbers are directly comparable.

- `class_counts`, `client_tv`, `mean_tv`, `gini`, `heterogeneity_stats`: how skewed a partition is.
- `partition_to_dict`: the JSON form of a partition (partition.json).
- `sample_class_counts`: clients of given sizes whose class mixes are Dirichlet draws and whose
  counts are multinomial samples of them (the model `--fit-alpha` fits to natural clients).
- `fit_alpha` / `fit_alpha_to_simulations`: the alpha whose simulated partitions have a given
  statistic on average, with an interval (the estimator of `cllora partition --fit-alpha`; see
  `fit_alpha_to_simulations` for why).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from cllora.partition.base import Partition, check_int, check_labels

# alphas tried when fitting: 0.01 to 1000, 8 per decade
ALPHA_GRID = np.logspace(-2, 3, 41)


# ---------------------------------------------------------------- statistics

def class_counts(clients: list[np.ndarray], labels, num_classes: int) -> np.ndarray:
    """(num_clients, num_classes) matrix of how many rows of each class each client holds."""
    labels = check_labels(labels)
    num_classes = check_int("num_classes", num_classes, 1)
    if labels.max() >= num_classes:
        raise ValueError(f"num_classes must be > the largest label ({int(labels.max())}), got {num_classes}")
    sizes = np.array([len(rows) for rows in clients], dtype=np.int64)
    rows = np.concatenate([np.asarray(r, dtype=np.int64) for r in clients]) if clients else np.zeros(0, np.int64)
    owners = np.repeat(np.arange(len(clients)), sizes)
    flat = np.bincount(owners * num_classes + labels[rows], minlength=len(clients) * num_classes)
    return flat.reshape(len(clients), num_classes)


def client_tv(counts: np.ndarray) -> np.ndarray:
    """Total-variation distance of each non-empty client's class mix to the pooled mix of all
    clients (half the L1 distance: 0 = the same mix, 1 = no class in common)."""
    counts = np.asarray(counts, dtype=float)
    sizes = counts.sum(axis=1)
    pooled = counts.sum(axis=0) / max(sizes.sum(), 1.0)
    full = sizes > 0
    return 0.5 * np.abs(counts[full] / sizes[full, None] - pooled).sum(axis=1)


def mean_tv(counts: np.ndarray) -> np.ndarray:
    """`client_tv(...).mean()` over the clients axis of (..., clients, classes) counts, for many
    partitions at once; every client must be non-empty."""
    counts = np.asarray(counts, dtype=float)
    pooled = counts.sum(axis=-2, keepdims=True)
    pooled /= pooled.sum(axis=-1, keepdims=True)
    mixes = counts / counts.sum(axis=-1, keepdims=True)
    return 0.5 * np.abs(mixes - pooled).sum(axis=-1).mean(axis=-1)


def gini(values) -> float:
    """Gini coefficient of non-negative values: 0 = all equal, towards 1 = one holds everything."""
    x = np.sort(np.asarray(values, dtype=float))
    if len(x) == 0 or x.sum() <= 0:
        return 0.0
    ranks = np.arange(1, len(x) + 1)
    return float(((2 * ranks - len(x) - 1) @ x) / (len(x) * x.sum()))


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if len(values) else None


def heterogeneity_stats(clients: list[np.ndarray], labels, num_classes: int) -> dict:
    """How skewed a partition is, as plain JSON-serialisable values.

    Per client (lists in client order; None for an empty client): class_counts, size,
    dominant_share (largest class share), tv (total-variation distance of its class mix to the pooled
    mix of all clients) and hellinger. Aggregates over non-empty clients: mean_dominant_share,
    mean_tv, max_tv, mean_hellinger; sizes: size_min, size_max, size_mean, size_gini. Also
    class_sizes (rows per class in all of `labels`), global_mix (pooled mix), num_examples, num_assigned.
    """
    labels = check_labels(labels)
    counts = class_counts(clients, labels, num_classes)
    sizes = counts.sum(axis=1)
    pooled = counts.sum(axis=0) / max(int(sizes.sum()), 1)
    full = sizes > 0
    mix = counts[full] / sizes[full, None]
    dominant = mix.max(axis=1) if len(mix) else np.zeros(0)
    tv = client_tv(counts)
    hellinger = np.sqrt(0.5 * ((np.sqrt(mix) - np.sqrt(pooled)) ** 2).sum(axis=1))

    def per_client(values: np.ndarray) -> list[float | None]:
        out: list[float | None] = [None] * len(sizes)
        for i, v in zip(np.flatnonzero(full), values):
            out[i] = float(v)
        return out

    return {
        "num_examples": len(labels), "num_assigned": int(sizes.sum()),
        "class_sizes": np.bincount(labels, minlength=num_classes).tolist(),
        "global_mix": pooled.tolist(), "sizes": sizes.tolist(), "class_counts": counts.tolist(),
        "dominant_share": per_client(dominant), "tv": per_client(tv), "hellinger": per_client(hellinger),
        "mean_dominant_share": _mean(dominant), "mean_tv": _mean(tv),
        "max_tv": float(tv.max()) if len(tv) else None, "mean_hellinger": _mean(hellinger),
        "size_min": int(sizes.min()) if len(sizes) else 0, "size_max": int(sizes.max()) if len(sizes) else 0,
        "size_mean": float(sizes.mean()) if len(sizes) else 0.0, "size_gini": gini(sizes),
    }


# ---------------------------------------------------------------- JSON form

def partition_to_dict(partition: Partition, labels, *, scheme: str, alpha: float | None, seed: int | None,
                      num_classes: int, class_edges, length_measure: str | None = None,
                      client_key: str | None = None) -> dict:
    """The JSON form of a partition (partition.json): settings, notes, statistics and every client's
    rows and class counts. alpha is None for iid and natural, where it plays no part; length_measure
    (the unit of class_edges, e.g. "tokens") is recorded when given; natural clients carry their
    name (the value of client_key they share)."""
    stats = heterogeneity_stats(partition.clients, labels, num_classes)
    names = list(partition.names) or [None] * len(partition.clients)
    return {
        "scheme": scheme,
        "alpha": None if scheme in ("iid", "natural") or alpha is None else float(alpha),
        "num_clients": len(partition.clients),
        "seed": None if seed is None else int(seed),
        "num_classes": int(num_classes),
        "class_edges": None if class_edges is None else [float(e) for e in class_edges],
        **({} if length_measure is None else {"length_measure": length_measure}),
        **({"client_key": client_key} if scheme == "natural" and client_key else {}),
        "notes": list(partition.notes),
        "stats": stats,
        "clients": [{"client_id": i, "size": int(len(rows)), "indices": np.asarray(rows).tolist(),
                     "class_counts": stats["class_counts"][i], **({} if name is None else {"name": name})}
                    for i, (rows, name) in enumerate(zip(partition.clients, names))],
    }


# ---------------------------------------------------------------- fitting alpha

def sample_class_counts(sizes, shares, alpha: float, reps: int, rng: np.random.Generator) -> np.ndarray:
    """(reps, clients, classes) class counts: client k's mix p_k ~ Dirichlet(alpha·K·shares) over the
    K classes with a positive share (Dirichlet(alpha·1), the length partitioner's, when the shares
    are equal), then its counts ~ Multinomial(sizes[k], p_k): the skew plus the sampling noise a
    real client of that size shows. Classes with share 0 get count 0."""
    sizes, shares = np.asarray(sizes, dtype=np.int64), np.asarray(shares, dtype=float)
    present = shares > 0
    conc = alpha * present.sum() * shares[present] / shares.sum()
    shape = (reps, len(sizes), len(conc))
    # Gamma(a) = Gamma(a + 1) · U^(1/a), in logs: exact, and no underflow to 0 for small a
    log_gamma = np.log(rng.gamma(conc + 1.0, size=shape)) + np.log1p(-rng.random(shape)) / conc
    mixes = np.exp(log_gamma - log_gamma.max(axis=-1, keepdims=True))
    mixes /= mixes.sum(axis=-1, keepdims=True)
    counts = np.zeros(shape[:2] + (len(shares),), dtype=np.int64)
    counts[..., present] = rng.multinomial(sizes, mixes)
    return counts


@dataclass(frozen=True)
class AlphaFit:
    """A fitted alpha and its interval, the union of two: `model_interval` (the alphas whose simulated
    partitions show the observed statistic within their central `level` range) and
    `client_interval` (the fit on clients resampled with replacement). An end at the grid's edge
    means "this or beyond"."""

    alpha: float
    low: float
    high: float
    statistic: float  # the observed value that was matched
    model_interval: tuple[float, float]
    client_interval: tuple[float, float]
    grid: tuple[float, ...]  # the alphas simulated
    curve: tuple[float, ...]  # mean simulated statistic at each alpha (non-increasing)

    @property
    def iid_like(self) -> bool:
        """The interval reaches the grid's largest alpha (1000 by default, where a client's class
        mix is the global one within sampling noise): the data cannot tell these clients from IID."""
        return self.high >= self.grid[-1]

    def describe(self) -> str:
        """One line: "alpha 2.74 (interval 1.73 - 4.38)", or the IID verdict when it applies."""
        low = f"<= {_short(self.low)}" if self.low <= self.grid[0] else _short(self.low)
        if self.iid_like:
            return (f"indistinguishable from IID (interval from alpha {low} to >= {_short(self.grid[-1])}, "
                    "the largest alpha simulated)")
        return f"alpha {_short(self.alpha)} (interval {low} - {_short(self.high)})"


def _short(x: float) -> str:
    return f"{x:.3g}" if x < 999.5 else f"{x:.0f}"


def fit_alpha(observed: float, bootstrap: np.ndarray, simulate: Callable[[float, np.random.Generator], float],
              rng: np.random.Generator, *, grid: np.ndarray = ALPHA_GRID, reps: int = 30,
              level: float = 0.95) -> AlphaFit:
    """`fit_alpha_to_simulations` with `simulate(alpha, rng)` (one simulated statistic) called
    `reps` times at each grid alpha."""
    grid = np.asarray(grid, dtype=float)
    sims = np.array([[simulate(float(a), rng) for _ in range(reps)] for a in grid])
    return fit_alpha_to_simulations(observed, bootstrap, sims, grid=grid, level=level)


def fit_alpha_to_simulations(observed: float, bootstrap: np.ndarray, sims: np.ndarray, *,
                             grid: np.ndarray = ALPHA_GRID, level: float = 0.95) -> AlphaFit:
    """The alpha at which the simulated statistic (`sims[i]`: draws at `grid[i]`; a statistic that
    falls as alpha grows, e.g. a mean TV distance) equals `observed` on average, with an interval.

    Estimator: simulation matching (method of simulated moments). The mean statistic per alpha,
    made non-increasing, is inverted by interpolation in log alpha. Interval: the union of (a) the
    alphas at which the observed value lies within the simulated statistic's central `level` range
    (inverting the simulated quantiles: the variability of the model itself, sampling noise
    included) and (b) the alphas fitted to `bootstrap`, the statistic on clients resampled with
    replacement, at the same quantiles (the variability of the real clients, which the model may
    not capture). An observed value inside the spread at the grid's largest alpha gives an interval
    that reaches it (`AlphaFit.iid_like`).

    Why not the maximum likelihood of the clients' class proportions under a Dirichlet: observed
    proportions have exact zeros (log 0) that need an arbitrary smoothing, which pulls small alphas
    up, and small clients' proportions carry sampling noise that a Dirichlet on proportions reads
    as skew. Matching one statistic of simulated clients of the observed sizes (see
    `cllora.partition.natural.fit_length_alpha`) needs neither (a Dirichlet-multinomial likelihood
    would too; matching keeps the fit on the statistic the partition report shows). Coverage of the interval on
    clients drawn at a known alpha: `benchmarks/bench_alpha_fit.py` (BENCHMARKS.md)."""
    grid, sims = np.asarray(grid, dtype=float), np.asarray(sims, dtype=float)
    if sims.ndim != 2 or len(sims) != len(grid):
        raise ValueError(f"sims must hold one row of draws per grid alpha ({len(grid)}), got shape {sims.shape}")
    tail = (1 - level) / 2
    mono = lambda values: np.minimum.accumulate(values)  # noqa: E731
    curve = mono(sims.mean(axis=1))
    model = (_invert(mono(np.quantile(sims, tail, axis=1)), grid, observed),
             _invert(mono(np.quantile(sims, 1 - tail, axis=1)), grid, observed))
    high_stat, low_stat = np.quantile(np.asarray(bootstrap, dtype=float), [1 - tail, tail])
    clients = (_invert(curve, grid, high_stat), _invert(curve, grid, low_stat))
    return AlphaFit(_invert(curve, grid, observed), min(model[0], clients[0]), max(model[1], clients[1]),
                    float(observed), model, clients, tuple(grid.tolist()), tuple(curve.tolist()))


def _invert(curve: np.ndarray, grid: np.ndarray, value: float) -> float:
    """Alpha where a non-increasing curve reaches value (log-linear between grid points), clipped
    to the grid's ends."""
    if value >= curve[0]:
        return float(grid[0])
    if value <= curve[-1]:
        return float(grid[-1])
    # np.interp needs increasing x: reverse the (non-increasing) curve
    return float(np.exp(np.interp(value, curve[::-1], np.log(grid[::-1]))))


def bootstrap_clients(statistic: Callable[[np.ndarray], float], num_clients: int,
                      rng: np.random.Generator, draws: int = 500) -> np.ndarray:
    """`statistic(indices)` on `draws` resamples of the clients (with replacement)."""
    return np.array([statistic(rng.integers(0, num_clients, num_clients))
                     for _ in range(draws)])
