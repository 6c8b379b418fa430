"""The shape of a run's loss curves (pure): how much the global test loss overfits, how much it
fluctuates from round to round, and how the gap between clients' local-model losses closes — the
three things the study's Figs. 6–9 describe.

Every function takes a curve as (round, loss) pairs of the evaluated rounds, in round order, and
returns NaN where the curve is too short to say.

- overfit = L_final − min_r L_r ≥ 0 (nats/token): how far the last round ends above the best one,
  with `best_round` the first round that reaches the minimum. 0 when the last round is the best.
- fluctuation = mean over r = 2 … R−1 of |L_{r+1} − 2 L_r + L_{r−1}|: the mean absolute second
  difference of the loss after the first round of training (nats/token). Why this statistic: a
  steady descent, however fast, and a smooth rise after a minimum (plain overfitting) have second
  differences near zero, so neither counts as fluctuation; a curve that goes up and down from round
  to round has large ones. First differences would count steady progress as fluctuation; a
  standard deviation around the mean would count the whole descent. Round 0 (the untrained
  model) is left out: the first round's drop is learning, not fluctuation. Needs every round
  evaluated (eval_every = 1) and R ≥ 3 rounds; NaN otherwise.
- late trend = the least-squares slope of the loss over the last half of the rounds,
  r = ⌈R/2⌉ … R (nats/token per round): > 0 when the loss rises late in training. Why beside
  overfit: overfit picks the minimum after looking at the curve, so a curve that only goes up and
  down around a plateau overfits too — on a flat curve with independent round-to-round noise,
  E[overfit] = `overfit_from_noise(fluctuation, R)` (≈ 0.79 × fluctuation at R = 10). The late
  trend's window is fixed before looking, so on that flat curve its expectation is 0 whatever the
  fluctuation; a rising trend (the study's "trend of overfitting") makes it positive. Needs every
  round of the window evaluated and at least 3 of them; NaN otherwise.
- local gap (Figs. 8, 9): in each round, max − min over the clients of their local models' test
  loss on their own split; `gap_first` is the first trained round's, `gap_last` the last round's,
  and `gap_closed` = gap_first − gap_last (> 0: the clients' losses approach each other).
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import numpy as np

Curve = Sequence[tuple[int, float]]
NAN = float("nan")


def since_start(curve: Curve) -> list[tuple[int, float]]:
    """The curve minus its round-0 value, (round, L_r − L_0) pairs; empty without a finite round 0.
    Each seed measures its own test sample, whose level differs between seeds: its change since
    round 0 leaves that level out, so a band over seeds shows training's noise, not the sample's."""
    start = dict(curve).get(0)
    if start is None or not math.isfinite(start):
        return []
    return [(r, v - start) for r, v in curve]


def overfit(curve: Curve) -> tuple[float, int | None]:
    """(L_final − min L, the first round of the minimum); (NaN, None) for an empty curve."""
    points = [(r, v) for r, v in curve if math.isfinite(v)]
    if not points:
        return NAN, None
    best_round, best = min(points, key=lambda p: p[1])  # min keeps the first of equal values
    return points[-1][1] - best, best_round


def fluctuation(curve: Curve) -> float:
    """Mean |second difference| of the loss over rounds 1..R (see the module docstring); NaN
    unless rounds 1..R are all evaluated and R >= 3."""
    points = {r: v for r, v in curve if r >= 1 and math.isfinite(v)}
    rounds = sorted(points)
    if len(rounds) < 3 or rounds != list(range(1, rounds[-1] + 1)):
        return NAN
    values = np.array([points[r] for r in rounds], dtype=float)
    return float(np.mean(np.abs(np.diff(values, n=2))))


def late_trend(curve: Curve) -> float:
    """Least-squares slope of the loss over rounds ceil(R/2)..R, R the last round (see the module
    docstring); NaN unless every round of that window is evaluated and it holds >= 3 rounds."""
    if not curve:
        return NAN
    points = {r: v for r, v in curve if math.isfinite(v)}
    last = curve[-1][0]
    window = list(range(math.ceil(last / 2), last + 1))
    if len(window) < 3 or any(r not in points for r in window):
        return NAN
    return float(np.polyfit(window, [points[r] for r in window], 1)[0])


def overfit_from_noise(fluctuation_value: float, rounds: int, draws: int = 20000) -> float:
    """The overfitting (final − min over rounds 1..R) that a flat curve shows from noise alone, when
    its round-to-round deviations are independent normal with the sd that gives this fluctuation
    (E|second difference| = σ·√6·√(2/π) ≈ 1.954 σ). Simulated with a fixed seed, so it is
    deterministic; NaN for a non-finite fluctuation or R < 3."""
    if not math.isfinite(fluctuation_value) or rounds < 3:
        return NAN
    return _noise_ratio(rounds, draws) * fluctuation_value


@functools.lru_cache(maxsize=None)
def _noise_ratio(rounds: int, draws: int) -> float:
    """E[final − min] / E|second difference| of R independent standard normals (simulated once per R)."""
    z = np.random.default_rng(0).standard_normal((draws, rounds))
    return float(np.mean(z[:, -1] - z.min(axis=1))) / float(np.mean(np.abs(np.diff(z, n=2, axis=1))))


def local_gap(clients: Sequence[dict], column: str = "local_model_test_loss") -> dict[str, float]:
    """The gap between clients' local-model losses (clients.csv rows: round, client_id, column):
    {gap_first, gap_last, gap_closed, first_round, last_round}; NaN where fewer than 2 clients
    have a value in the first or last trained round."""
    by_round: dict[int, list[float]] = {}
    for row in clients:
        value = row.get(column)
        if (row.get("round") or 0) >= 1 and isinstance(value, (int, float)) and math.isfinite(value):
            by_round.setdefault(int(row["round"]), []).append(float(value))
    rounds = sorted(r for r, v in by_round.items() if len(v) >= 2)
    if not rounds:
        return {"gap_first": NAN, "gap_last": NAN, "gap_closed": NAN, "first_round": NAN, "last_round": NAN}
    first, last = (max(by_round[r]) - min(by_round[r]) for r in (rounds[0], rounds[-1]))
    return {"gap_first": first, "gap_last": last, "gap_closed": first - last,
            "first_round": rounds[0], "last_round": rounds[-1]}
