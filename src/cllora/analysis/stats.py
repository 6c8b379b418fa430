"""The report's statistics, pure (numpy and scipy, no I/O): curves and their 95 % bands over
seeds, the paired bootstrap over test texts, the t-interval over seeds, the three-way verdict that
combines them (`compare`), the smallest effect the seeds could detect, Holm's correction, and
numbers as text.

How `compare` decides a comparison between conditions (an *effect* defined so that the claim
predicts it to lie inside (low, high), e.g. > 0). The unit of evidence is the seed: each seed draws
its own corpus split, test texts, partition, LoRA init, client sampling and batch order, and every
condition of a seed shares that seed's data (the comparison is paired by seed). So the per-seed
effects are independent draws that carry BOTH noise sources, test-text sampling and training, and
- with at least MIN_SEEDS seeds common to every condition, the verdict comes from the t-interval
  of their mean (scipy.stats.t): inside (low, high) → supported, entirely outside → contradicted,
  else inconclusive. A t-interval rather than a two-level bootstrap: with 3–5 seeds a bootstrap
  over seeds has a handful of distinct resamples and under-covers, while the t-interval is exact
  for normal per-seed effects and its coverage is tested on simulated null data;
- with fewer seeds the verdict is *inconclusive*, always: one or two seeds cannot tell a training
  fluke from an effect. Where per-text losses exist, the paired bootstrap over the seed's test
  texts is still shown, labelled as covering test-text sampling only;
- what an inconclusive verdict tells is its interval: effects outside [low, high] are excluded at
  95 %. The minimal detectable effect is a planning number (cllora.analysis.power, from a plan's
  planning sd), never computed from the sample being judged;
- `p_value` is the decision p-value: the smallest α at which the (1 − α) t-interval would decide
  (for a boundary at 0, the two-sided t-test's p), so Holm's correction over a claim's comparisons
  agrees with their intervals; `interval90` is the 90 % interval an equivalence test reads.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Iterable

import numpy as np
from scipy import stats as sps

from cllora.analysis import power

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
MIN_SEEDS = 3  # fewer seeds: inconclusive, whatever the test-text bootstrap says
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
    entirely outside (strictly: an exact tie on the boundary is not a contradiction), inconclusive
    otherwise (or without an interval)."""
    if not (finite(low) and finite(high)):
        return INCONCLUSIVE
    if bound_low < low and high < bound_high:
        return SUPPORTED
    if high < bound_low or low > bound_high:
        return CONTRADICTED
    return INCONCLUSIVE


def seeds_needed(effect: float, sd: float, level: float = LEVEL, most: int = 100) -> int | None:
    """Seeds (at least MIN_SEEDS) at which the t-test detects `effect` with 80 % power given a
    per-seed sd of `sd` (cllora.analysis.power, noncentral t); None beyond `most`."""
    return power.seeds_needed(effect, sd, level, least=MIN_SEEDS, most=most)


def t_pvalue(values: list[float]) -> float | None:
    """Two-sided p-value of the one-sample t-test of mean 0 (None for fewer than 2 values)."""
    vals = np.asarray([v for v in values if finite(v)], dtype=float)
    if len(vals) < 2:
        return None
    sd = float(np.std(vals, ddof=1))
    if sd == 0:
        return 1.0 if vals.mean() == 0 else 0.0
    return float(2 * sps.t.sf(abs(vals.mean()) / (sd / math.sqrt(len(vals))), len(vals) - 1))


def decision_pvalue(values: list[float], bound_low: float = 0.0, bound_high: float = math.inf) -> float | None:
    """The smallest α at which the two-sided (1 − α) t-interval of the mean lies inside (bound_low,
    bound_high) or entirely outside it: the p-value of the verdict `verdict` reaches at level 1 − α
    (for bounds (0, ∞), the two-sided one-sample t-test of mean 0). None for fewer than 2 values;
    1 when the mean sits on a boundary."""
    vals = np.asarray([v for v in values if finite(v)], dtype=float)
    if len(vals) < 2:
        return None
    m, se = float(vals.mean()), float(np.std(vals, ddof=1)) / math.sqrt(len(vals))
    inside = min(m - bound_low, bound_high - m)  # > 0: the mean is inside the claimed range
    distance = inside if inside > 0 else max(bound_low - m, m - bound_high)
    if se == 0:
        return 0.0 if distance > 0 else 1.0
    return float(min(1.0, 2 * sps.t.sf(distance / se, len(vals) - 1))) if distance > 0 else 1.0


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (family-wise error ≤ the level); None stays None."""
    known = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    out: list[float | None] = [None] * len(pvalues)
    running, m = 0.0, len(known)
    for rank, (p, i) in enumerate(known):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def compare(seed_values: list[dict[int, float]], contrast: Contrast,
            texts: list[dict[int, Texts]] | None = None, *, bound_low: float = 0.0,
            bound_high: float = math.inf, min_seeds: int = MIN_SEEDS, seed: int = 0,
            level: float = LEVEL) -> dict | None:
    """One comparison between conditions (see the module docstring): effect, its interval, seeds,
    the minimal detectable effect, method and verdict; with fewer than `min_seeds` seeds the
    verdict is inconclusive and `text_interval` (test-text sampling only) is shown where per-text
    losses exist. `seed_values` holds each condition's value per seed (the final loss, say);
    `texts` its per-text losses per seed, None where a run lacks them. None when the conditions
    share no seed."""
    common = sorted(set.intersection(*(set(s for s, v in d.items() if finite(v)) for d in seed_values)))
    if not common:
        return None
    per_seed = [float(contrast(np.array([d[s] for d in seed_values], dtype=float))) for s in common]
    n = len(common)
    out = {"seeds": n, "texts": 0, "per_seed": per_seed, "seed_sd": float(np.std(per_seed, ddof=1))
           if n > 1 else None, "text_interval": None, "interval90": None}
    if n < min_seeds and texts is not None and all(texts):  # shown only where it is all there is
        num, den, boot_seeds = text_units([{s: t[s] for s in common if s in t} for t in texts])
        if num.shape[1] >= 2:
            boot = paired_bootstrap(num, den, contrast, seed=seed, level=level)
            out.update(texts=num.shape[1], text_seeds=len(boot_seeds), text_interval=list(boot[1:]))
    seeds = f"{n} seed" + ("" if n == 1 else "s")
    if n >= min_seeds:
        effect, low, high = t_interval(per_seed, level)
        method = f"t-interval over {seeds} (paired by seed; covers training and test-text noise)"
        out["interval90"] = list(t_interval(per_seed, 0.90)[1:])
    else:
        effect, low, high = float(np.mean(per_seed)), None, None
        method = f"{seeds}: a verdict needs {min_seeds}" + (
            "; the interval shown covers test-text sampling only, not training noise"
            if out["text_interval"] else "")
    out.update(effect=effect, low=low, high=high, method=method,
               verdict=verdict(low, high, bound_low, bound_high),
               p_value=decision_pvalue(per_seed, bound_low, bound_high) if n >= min_seeds else None)
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
    """x to `digits` decimals; 'inf' or 'nan' for a value that is recorded but not finite (a diverged
    loss is shown as such), 'n/a' for none."""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
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


def fmt_excluded(est: dict, unit: str = "", level: float = LEVEL) -> str:
    """What an inconclusive verdict tells: 'effects outside [lo, hi] are excluded at 95 %'; '' without
    an interval."""
    if not (finite(est.get("low")) and finite(est.get("high"))):
        return ""
    return f"effects outside {fmt_interval(est, unit)} are excluded at {100 * level:g} %"


def fmt_verdict_interval(est: dict, unit: str = "") -> str:
    """The interval a reader should see: the verdict's, else (fewer seeds than a verdict needs)
    the test-text interval, labelled 'test texts only: [...]', else '(no interval)'."""
    text = est.get("text_interval")
    if not (finite(est.get("low")) and finite(est.get("high"))) and text:
        return f"test texts only: {fmt_interval({'low': text[0], 'high': text[1]}, unit)}"
    return fmt_interval(est, unit)


def fmt_effect(est: dict | None, unit: str = "") -> str:
    """'+0.0123 [+0.0050, +0.0190]': an effect and its 95 % interval (fmt_verdict_interval, in
    parentheses when it is the test-text one); 'n/a' without an effect."""
    if not est:
        return "n/a"
    interval = fmt_verdict_interval(est, unit)
    if interval.startswith("test texts only"):
        interval = f"({interval})"
    return f"{fmt_signed(est.get('effect'), unit)} {interval}"


def fmt_mde(est: dict | None, unit: str = "") -> str:
    """'±0.0123': a claim's planning minimal detectable effect (its plan's planning sd at the
    planned seeds, 80 % power), 'n/a' without one."""
    value = (est or {}).get("mde")
    if not finite(value):
        return "n/a"
    return f"±{100 * value:.1f} %" if unit == "%" else f"±{value:.4f}"


def fmt_mb(x: float | None) -> str:
    return "n/a" if not finite(x) else f"{x / 1e6:.3f}"


def fmt_column(kind: str, x: float | None) -> str:
    """A value of a column of this kind (cllora.records.KINDS): losses to 4 decimals, bytes in MB,
    the rest to 3 significant digits."""
    return {"loss": fmt, "bytes": fmt_mb}.get(kind, fmt_g)(x)


def fmt_count(x: int | None) -> str:
    """A parameter count with thousands separators, '—' when the run did not record it."""
    return "—" if not finite(x) else f"{x:,}"
