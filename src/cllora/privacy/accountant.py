"""The privacy accountant: ε at δ after t rounds of client-level DP-FedAvg, from dp-accounting's
RDP accountant, for the way clients are really sampled; and the noise multiplier for a target ε.

One round releases a sum of clipped updates (each of norm ≤ C) plus N(0, (zC)² I) over a sample
of k of the N clients. Two samplings:
- "fixed" (what the engine does): k distinct clients uniformly at random. dp-accounting bounds
  this with Wang, Balle & Kasiviswanathan (2019, Theorem 27) under the *replace-one* relation
  (N is public; neighbouring federations differ in one client's data). Replacing a client's data
  moves its clipped update by up to 2C, so the Gaussian mechanism's multiplier is z/2.
- "poisson": every client joins independently with probability q = k/N, under *add-or-remove-one*
  (sensitivity C, multiplier z): Mironov et al. (2019) as in TF Privacy's DP-SGD tutorials.
Rounds compose: RDP adds up, ε(t) = conversion of t·RDP₁ (dp-accounting's conversion, Canonne,
Kamath & Steinke 2020 / Asoodeh et al. 2020, tighter than Mironov's ε = RDP − log δ/(α−1)).
"""

from __future__ import annotations

import math

import numpy as np

SAMPLINGS = ("fixed", "poisson")
MAX_NOISE = 100.0  # largest noise multiplier noise_for_epsilon searches (the update is then noise)
MIN_NOISE = 0.1  # smallest it searches: below it ε runs to thousands, a bound that protects nothing, and
# the search (about 0.2 s an ε on 2 cores) would halve towards 0 for ~100 s on a huge target


DELTA_CAP = 1e-5


def default_delta(population: int) -> float:
    """δ = min(1/N^1.1, 1e-5): McMahan et al.'s 1/N^1.1 keeps δ below 1/N (where publishing one
    client's data outright would pass), but for tens of clients it is a few per cent, so it is
    capped at the usual 1e-5."""
    return min(float(population) ** -1.1, DELTA_CAP)


def _event(noise_multiplier: float, sample_size: int, population: int, sampling: str):
    import dp_accounting as dpa

    if sampling == "fixed":
        return (dpa.SampledWithoutReplacementDpEvent(population, sample_size,
                                                     dpa.GaussianDpEvent(noise_multiplier / 2)),
                dpa.NeighboringRelation.REPLACE_ONE)
    return (dpa.PoissonSampledDpEvent(sample_size / population, dpa.GaussianDpEvent(noise_multiplier)),
            dpa.NeighboringRelation.ADD_OR_REMOVE_ONE)


def _check(noise_multiplier: float, sample_size: int, population: int, sampling: str) -> None:
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}")
    if not (isinstance(population, int) and isinstance(sample_size, int) and 1 <= sample_size <= population):
        raise ValueError(f"need integers 1 <= sample_size <= population, got {sample_size} of {population}")
    if not noise_multiplier > 0:
        raise ValueError(f"noise_multiplier must be > 0, got {noise_multiplier!r}")


def round_rdp(noise_multiplier: float, sample_size: int, population: int, sampling: str = "fixed",
              orders=None) -> tuple[np.ndarray, np.ndarray]:
    """(orders α, RDP ε(α) of one round): the accountant's state after composing one round."""
    from dp_accounting.rdp import RdpAccountant

    _check(noise_multiplier, sample_size, population, sampling)
    event, relation = _event(noise_multiplier, sample_size, population, sampling)
    accountant = RdpAccountant(orders, neighboring_relation=relation)
    accountant.compose(event)
    return np.asarray(accountant.orders, dtype=float), np.asarray(accountant.rdp, dtype=float)


def _epsilon_of(orders: np.ndarray, rdp: np.ndarray, delta: float) -> float:
    from dp_accounting.rdp.rdp_privacy_accountant import compute_epsilon

    return float(compute_epsilon(orders, rdp, delta)[0])


def _check_delta(delta: float) -> None:
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")


def epsilons(noise_multiplier: float, sample_size: int, population: int, rounds: int, delta: float,
             sampling: str = "fixed", orders=None) -> list[float]:
    """ε at δ after each of rounds 1..`rounds` (RDP composes additively over rounds)."""
    _check_delta(delta)
    alphas, rdp = round_rdp(noise_multiplier, sample_size, population, sampling, orders)
    return [_epsilon_of(alphas, t * rdp, delta) for t in range(1, rounds + 1)]


def epsilon(noise_multiplier: float, sample_size: int, population: int, rounds: int, delta: float,
            sampling: str = "fixed", orders=None) -> float:
    """ε at δ after `rounds` rounds."""
    _check_delta(delta)
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds!r}")
    alphas, rdp = round_rdp(noise_multiplier, sample_size, population, sampling, orders)
    return _epsilon_of(alphas, rounds * rdp, delta)


def noise_for_epsilon(target: float, sample_size: int, population: int, rounds: int, delta: float,
                      sampling: str = "fixed", tolerance: float = 1e-3) -> float:
    """The smallest noise multiplier z (to within `tolerance` relative) whose ε after `rounds`
    rounds is at most `target`; ValueError when even z = MAX_NOISE does not reach it."""
    if not (target > 0 and math.isfinite(target)):
        raise ValueError(f"target epsilon must be a finite number > 0, got {target!r}")
    achieved = epsilon(MAX_NOISE, sample_size, population, rounds, delta, sampling)
    if achieved > target:
        raise ValueError(f"epsilon {target} cannot be met in {rounds} rounds of {sample_size} of "
                         f"{population} clients at delta {delta:.3g}: even noise multiplier "
                         f"{MAX_NOISE:g} gives epsilon {achieved:.3g}; use fewer rounds, more clients "
                         "or a larger epsilon")
    loosest = epsilon(MIN_NOISE, sample_size, population, rounds, delta, sampling)
    if loosest <= target:
        raise ValueError(f"epsilon {target:g} is met even by noise multiplier {MIN_NOISE:g} (epsilon "
                         f"{loosest:.3g} after {rounds} rounds of {sample_size} of {population} clients), "
                         f"noise that protects nothing; choose an epsilon below {loosest:.3g}, or inf "
                         "for clipping without noise")
    low, high = MIN_NOISE, MAX_NOISE  # bounded: about log2(MAX_NOISE / (tolerance * MIN_NOISE)) steps
    while high - low > tolerance * high:
        mid = (low + high) / 2
        if epsilon(mid, sample_size, population, rounds, delta, sampling) <= target:
            high = mid
        else:
            low = mid
    return high
