"""Clipping a client's update to L2 norm C (all adapter tensors flattened together), and what the
clipping did per round: the share of clients clipped and the mean clip factor, overall and by the
client's dominant length class (the class most of its training texts fall in).

    Δ_k = y_k − x                      (client k's adapter minus the global one, in float64)
    f_k = min(1, C / ‖Δ_k‖₂)           (the clip factor; 1 = not clipped)
    clip(Δ_k) = f_k Δ_k                (‖clip(Δ_k)‖₂ ≤ C)

Pure: torch tensors through their methods only, numpy for the statistics.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

State = dict  # tensor name → tensor


def update_norm(delta: State) -> float:
    """The L2 norm of all tensors of an update flattened together, summed in sorted name order so
    that the same tensors give the same float whatever order the dict holds them in (a resumed
    run's state comes back from its checkpoint in sorted order)."""
    return math.sqrt(sum(float((delta[k].double() ** 2).sum()) for k in sorted(delta)))


def clip_factor(norm: float, clip: float) -> float:
    """min(1, C / norm): what the update is multiplied by so that its norm is at most C."""
    if not clip > 0:
        raise ValueError(f"clip must be > 0, got {clip!r}")
    if not math.isfinite(norm) or norm < 0:
        raise ValueError(f"an update norm must be finite and >= 0, got {norm!r}")
    return 1.0 if norm <= clip else clip / norm


def clipped_deltas(global_state: State, states: Sequence[State],
                   clip: float) -> tuple[list[State], list[float], list[float]]:
    """Each state's update against `global_state`, clipped to norm `clip` (float64 tensors), with
    the updates' norms before clipping and their clip factors."""
    deltas, norms, factors = [], [], []
    for state in states:
        if state.keys() != global_state.keys():
            raise ValueError("a client state must hold exactly the global adapter's tensors")
        delta = {k: state[k].double() - global_state[k].double() for k in global_state}
        norm = update_norm(delta)
        factor = clip_factor(norm, clip)
        deltas.append({k: v * factor for k, v in delta.items()})
        norms.append(norm)
        factors.append(factor)
    return deltas, norms, factors


def dominant_classes(labels: np.ndarray, client_rows: Sequence[np.ndarray], num_classes: int) -> np.ndarray:
    """Each client's dominant length class: the class most of its training texts have (ties: the
    shorter class; -1 for a client without texts)."""
    out = np.full(len(client_rows), -1, dtype=np.int64)
    for cid, rows in enumerate(client_rows):
        if len(rows):
            out[cid] = int(np.argmax(np.bincount(labels[rows], minlength=num_classes)))
    return out


DP_COLUMNS = ("dp_epsilon", "dp_noise_std", "dp_clipped_share", "dp_clip_factor_mean",
              "dp_update_norm_median")  # rounds.csv, empty without DP (the per-class ones: clip_columns)


def clip_columns(num_classes: int) -> tuple[str, ...]:
    """The per-class clip columns of rounds.csv: dp_clipped_share_c{c}, dp_clip_factor_c{c}."""
    return tuple(f"dp_{stat}_c{c}" for c in range(num_classes) for stat in ("clipped_share", "clip_factor"))


def clip_statistics(norms: Sequence[float], factors: Sequence[float], classes: Sequence[int],
                    num_classes: int) -> dict[str, float | None]:
    """A round's clip statistics: the share of clients clipped (factor < 1), the mean clip factor,
    the median update norm, and the first two by the clients' dominant class (None for a class
    no client of this round has)."""
    factors = np.asarray(factors, dtype=float)
    classes = np.asarray(classes)
    if len(factors) != len(classes) or len(factors) != len(norms):
        raise ValueError(f"got {len(norms)} norms, {len(factors)} factors and {len(classes)} classes")
    out: dict[str, float | None] = {
        "dp_clipped_share": float(np.mean(factors < 1)) if len(factors) else None,
        "dp_clip_factor_mean": float(np.mean(factors)) if len(factors) else None,
        "dp_update_norm_median": float(np.median(norms)) if len(norms) else None}
    for c in range(num_classes):
        mine = factors[classes == c]
        out[f"dp_clipped_share_c{c}"] = float(np.mean(mine < 1)) if len(mine) else None
        out[f"dp_clip_factor_c{c}"] = float(np.mean(mine)) if len(mine) else None
    return out
