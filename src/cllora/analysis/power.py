"""Planning numbers for a paired comparison over seeds (pure, scipy): the exact power of the
two-sided one-sample t-test from the noncentral t distribution, the minimal detectable effect
(MDE) at a planned number of seeds and a planning sd, and the seeds an effect needs.

These are *planning* numbers: they take the per-seed sd from a plan (a pilot, an earlier sweep),
never from the sample being judged, and they say what a design could detect before it runs. They
are not what an inconclusive interval excludes: that is the interval itself.
"""

from __future__ import annotations

import math

from scipy import optimize
from scipy import stats as sps

LEVEL = 0.95
POWER = 0.80


def t_power(effect: float, sd: float, n: int, level: float = LEVEL) -> float:
    """Probability that the two-sided level-`level` one-sample t-test over `n` per-seed effects
    of mean `effect` and sd `sd` rejects 0 (noncentral t with n − 1 degrees of freedom)."""
    if n < 2 or sd <= 0:
        raise ValueError(f"power needs at least 2 seeds and a positive sd, got n={n}, sd={sd}")
    df = n - 1
    crit = sps.t.ppf(0.5 + level / 2, df)
    nc = abs(effect) * math.sqrt(n) / sd
    return float(sps.nct.sf(crit, df, nc) + sps.nct.cdf(-crit, df, nc))


def planning_mde(sd: float, n: int, level: float = LEVEL, power: float = POWER) -> float:
    """The smallest true mean effect the two-sided t-test over `n` seeds detects with `power`,
    for a per-seed sd of `sd` (the plan's planning sd): solves t_power(mde) = power exactly."""
    if not (sd > 0 and math.isfinite(sd)):
        raise ValueError(f"planning_sd must be a positive number, got {sd!r}")
    if n < 2:
        raise ValueError(f"a minimal detectable effect needs at least 2 planned seeds, got {n}")
    low, high = 0.0, sd
    while t_power(high, sd, n, level) < power:
        high *= 2
    return float(optimize.brentq(lambda d: t_power(d, sd, n, level) - power, low, high, xtol=1e-12 * sd))


def seeds_needed(effect: float, sd: float, level: float = LEVEL, power: float = POWER, least: int = 3,
                 most: int = 100) -> int | None:
    """The fewest seeds (at least `least`) at which the t-test detects `effect` with `power` given a
    per-seed sd of `sd`; None beyond `most` or without a usable effect or sd."""
    if not (math.isfinite(effect) and math.isfinite(sd)) or sd < 0:
        return None
    if sd == 0:
        return least
    if effect == 0:
        return None
    for n in range(max(least, 2), most + 1):
        if t_power(effect, sd, n, level) >= power:
            return n
    return None
