"""The report's statistics, pure (numpy and scipy, no I/O): curves and their 95 % bands over
seeds, the paired bootstrap over test texts, the t-interval over seeds, the three-way verdict that
combines them (`compare`), and numbers as text.

How `compare` decides a comparison between conditions (an *effect* defined so that the claim
predicts it to lie inside (low, high), e.g. > 0):
- with at least MIN_SEEDS seeds common to every condition: the mean over seeds of the per-seed
  effect and its t-interval (scipy.stats.t), which holds training noise (and test-set noise where
  the seed changes the test split);
- else, where every condition saved its per-text test losses: a paired bootstrap over test texts
  (scipy.stats.bootstrap, BCa, seeded): the same texts resampled for every condition, each
  condition's loss the token-weighted mean of its per-text losses; this covers test-text sampling,
  not training noise, so a verdict rests on it only when it already excludes the boundary;
- else (runs recorded before per-text losses, fewer than MIN_SEEDS seeds): the point estimate
  only, and the verdict is inconclusive.
The interval decides: inside (low, high) → supported, entirely outside → contradicted, else
inconclusive.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Iterable

import numpy as np
from scipy import stats as sps

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
MIN_SEEDS = 3  # fewer seeds: the verdict needs the paired bootstrap to exclude the boundary
LEVEL = 0.95

Texts = tuple[np.ndarray, np.ndarray, np.ndarray]  # (text_index, tokens, token-mean loss) per text
Contrast = Callable[[np.ndarray], Any]  # condition losses (k,) or (k, B) -> effect () or (B,)


def finite(x: Any) -> bool:
    return isinstance(x, (int, float, np.floating, np.integer)) and not isinstance(x, bool) \
        and math.isfinite(x)


def curve(rows: list[dict], key: str) -> list[tuple[int, float]]:
    """(round, value) of one column, finite values only."""
    return [(int(r["round"]), float(r[key])) for r in rows if finite(r.get(key))]


def mean(values: Iterable[float | None]) -> float | None:
    """Mean of the finite values, None when there is none."""
    vals = [v for v in values if finite(v)]
    return float(np.mean(vals)) if vals else None


def t_half_width(values: np.ndarray, level: float = LEVEL) -> float:
    """Half-width of the t-interval of the mean of `values` (0 for fewer than 2 values)."""
    n = len(values)
    if n < 2:
        return 0.0
    return float(sps.t.ppf(0.5 + level / 2, n - 1) * np.std(values, ddof=1) / math.sqrt(n))


def mean_std_curve(curves: list[list[tuple[int, float]]]) -> dict:
    """Per round: mean, sample std (0 with one seed), the half-width of the 95 % t-interval of the
    mean over seeds (0 with one seed) and how many seeds had a value."""
    by_round: dict[int, list[float]] = {}
    for points in curves:
        for rnd, value in points:
            by_round.setdefault(rnd, []).append(value)
    rounds = sorted(by_round)
    vals = [np.asarray(by_round[r], dtype=float) for r in rounds]
    return {"x": rounds, "mean": [float(v.mean()) for v in vals],
            "std": [float(v.std(ddof=1)) if len(v) > 1 else 0.0 for v in vals],
            "half": [t_half_width(v) for v in vals], "n": [len(v) for v in vals]}


def relative_range(values: np.ndarray) -> np.ndarray:
    """(max − min) / |mean| along axis 0: the spread of conditions relative to their level."""
    values = np.asarray(values, dtype=float)
    return (values.max(axis=0) - values.min(axis=0)) / np.abs(values.mean(axis=0))


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rank correlation (0 when either side is constant)."""
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    return float(sps.spearmanr(x, y).statistic)


# ---------------------------------------------------------------- intervals

def t_interval(values: list[float], level: float = LEVEL) -> tuple[float | None, float | None, float | None]:
    """(mean, low, high): the t-interval of the mean over seeds; no interval for fewer than 2."""
    vals = np.asarray([v for v in values if finite(v)], dtype=float)
    if len(vals) == 0:
        return None, None, None
    m = float(vals.mean())
    if len(vals) < 2:
        return m, None, None
    half = t_half_width(vals, level)
    return m, m - half, m + half


def text_units(tables: list[dict[int, Texts]]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Pair conditions by (seed, text_index): for the seeds every condition has, the texts every
    condition scored. Returns token×loss and tokens, each (conditions, units), and the seeds."""
    seeds = sorted(set.intersection(*(set(t) for t in tables))) if tables else []
    nums, dens = [[] for _ in tables], [[] for _ in tables]
    for seed in seeds:
        common = np.array(sorted(set.intersection(*(set(t[seed][0].tolist()) for t in tables))), dtype=int)
        for c, table in enumerate(tables):
            index, tokens, loss = (np.asarray(a) for a in table[seed])
            pick = {int(i): j for j, i in enumerate(index)}
            rows = np.array([pick[int(i)] for i in common], dtype=int)
            nums[c].append(tokens[rows] * loss[rows])
            dens[c].append(tokens[rows].astype(float))
    if not seeds:
        return np.zeros((len(tables), 0)), np.zeros((len(tables), 0)), []
    return np.array([np.concatenate(n) for n in nums]), np.array([np.concatenate(d) for d in dens]), seeds


def paired_bootstrap(num: np.ndarray, den: np.ndarray, contrast: Contrast, *, level: float = LEVEL,
                     n_resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """(effect, low, high) of contrast(token-weighted mean loss of each condition), resampling the
    paired texts (columns) with replacement; BCa interval, percentile where BCa is undefined (no
    variation). `num` = tokens × loss and `den` = tokens, shape (conditions, texts)."""
    k = len(num)

    def statistic(*arrays, axis=-1):
        means = np.stack([arrays[c].sum(axis=axis) / arrays[k + c].sum(axis=axis) for c in range(k)])
        return contrast(means)

    data = tuple(num) + tuple(den)
    effect = float(statistic(*data))
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ci = sps.bootstrap(data, statistic, paired=True, vectorized=True, method=method,
                               confidence_level=level, n_resamples=n_resamples, batch=250,
                               rng=np.random.default_rng(seed)).confidence_interval
        if finite(ci.low) and finite(ci.high):
            break
    return effect, float(ci.low), float(ci.high)


# ---------------------------------------------------------------- verdicts

def verdict(low: float | None, high: float | None, bound_low: float = 0.0,
            bound_high: float = math.inf) -> str:
    """Supported when the interval lies inside (bound_low, bound_high), contradicted when it lies
    entirely outside, inconclusive otherwise (or without an interval)."""
    if not (finite(low) and finite(high)):
        return INCONCLUSIVE
    if bound_low < low and high < bound_high:
        return SUPPORTED
    if high <= bound_low or low >= bound_high:
        return CONTRADICTED
    return INCONCLUSIVE


def compare(seed_values: list[dict[int, float]], contrast: Contrast,
            texts: list[dict[int, Texts]] | None = None, *, bound_low: float = 0.0,
            bound_high: float = math.inf, min_seeds: int = MIN_SEEDS, seed: int = 0) -> dict | None:
    """One comparison between conditions (see the module docstring): effect, its 95 % interval,
    seeds, texts, method and verdict. `seed_values` holds each condition's value per seed (the
    final loss, say); `texts` its per-text losses per seed, None where a run lacks them. None when
    the conditions share no seed."""
    common = sorted(set.intersection(*(set(s for s, v in d.items() if finite(v)) for d in seed_values)))
    if not common:
        return None
    per_seed = [float(contrast(np.array([d[s] for d in seed_values], dtype=float))) for s in common]
    out = {"seeds": len(common), "texts": 0, "per_seed": per_seed}
    out["seed_interval"] = list(t_interval(per_seed)[1:]) if len(common) >= 2 else None
    boot = None
    if texts is not None and all(texts):
        num, den, boot_seeds = text_units([{s: t[s] for s in common if s in t} for t in texts])
        if num.shape[1] >= 2:
            boot = paired_bootstrap(num, den, contrast, seed=seed)
            out.update(texts=num.shape[1], text_seeds=len(boot_seeds), text_interval=list(boot[1:]))
    if len(common) >= min_seeds:
        effect, low, high = t_interval(per_seed)
        method = f"t-interval over {len(common)} seeds"
    elif boot is not None:
        effect, low, high = boot
        method = f"paired bootstrap over {out['texts']} test texts" + \
                 (f" of {out['text_seeds']} seeds" if out["text_seeds"] > 1 else "")
    else:
        effect, low, high = float(np.mean(per_seed)), None, None
        seeds = f"{len(common)} seed" + ("" if len(common) == 1 else "s")
        method = f"point estimate: {seeds}, an interval needs {min_seeds}" + \
            ("" if texts is None else " or per-text test losses (runs recorded before them lack them)")
    out.update(effect=effect, low=low, high=high, method=method,
               verdict=verdict(low, high, bound_low, bound_high))
    return out


def combine(verdicts: list[str]) -> str:
    """A claim over several comparisons: supported when every one is, contradicted when any is."""
    if verdicts and all(v == SUPPORTED for v in verdicts):
        return SUPPORTED
    return CONTRADICTED if CONTRADICTED in verdicts else INCONCLUSIVE


# ---------------------------------------------------------------- numbers as text

def short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def fmt(x: float | None, digits: int = 4) -> str:
    return "n/a" if not finite(x) else f"{x:.{digits}f}"


def fmt_g(x: float | None) -> str:
    return "n/a" if not finite(x) else f"{x:.3g}"


def fmt_pm(row: dict) -> str:
    """A condition's final loss with its std over seeds when there is one."""
    std = row.get("final_loss_std")
    return fmt(row["final_loss"]) + (f" ± {std:.4f}" if finite(std) else "")


def fmt_signed(x: float | None, unit: str = "") -> str:
    """A signed effect: '+0.0123' (nats, ratios) or '+1.2 %' (unit '%', x a fraction)."""
    if not finite(x):
        return "n/a"
    return f"{100 * x:+.1f} %" if unit == "%" else f"{x:+.4f}"


def fmt_interval(est: dict | None, unit: str = "") -> str:
    """'[+0.0050, +0.0190]' (a 95 % interval), '(no interval)' without one."""
    if not (est and finite(est.get("low")) and finite(est.get("high"))):
        return "(no interval)"
    return f"[{fmt_signed(est['low'], unit)}, {fmt_signed(est['high'], unit)}]"


def fmt_effect(est: dict | None, unit: str = "") -> str:
    """'+0.0123 [+0.0050, +0.0190]': an effect and its 95 % interval, 'n/a' without an effect."""
    return "n/a" if not est else f"{fmt_signed(est.get('effect'), unit)} {fmt_interval(est, unit)}"


def fmt_mb(x: float | None) -> str:
    return "n/a" if not finite(x) else f"{x / 1e6:.3f}"


def fmt_count(x: int | None) -> str:
    """A parameter count with thousands separators, '—' when the run did not record it."""
    return "—" if not finite(x) else f"{x:,}"
