"""Which client-level DP settings go together, and which federated strategies compose with DP (those
whose server needs only the mean of the updates: cllora.aggregate.mean_only_strategies).

Pure: plain values in, a ValueError naming the setting and its value out (`cllora.config` words it as
the user's error). DP is on exactly when `dp_clip` is set.
"""

from __future__ import annotations

import math
from typing import Any

from cllora.aggregate import mean_only_strategies, needs_individual

DP_OPTIONS = ("dp_noise", "dp_target_epsilon", "dp_delta")  # read only when dp_clip is set
SEEDED_FLAG = "dp_seeded_noise_voids_guarantee"  # True: seeded noise and sampling, no guarantee


def _number(name: str, value: Any, low_open: float = 0.0) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
            or value <= low_open:
        raise ValueError(f"{name} must be a number > {low_open:g}, got {value!r}")
    return float(value)


def check_dp_settings(values: dict[str, Any]) -> None:
    """The DP settings of a run (`values`: its settings by name) are complete and consistent: a clip
    C > 0; exactly one of dp_noise z > 0 and dp_target_epsilon E > 0 (E = inf: clipping and
    the fixed denominator without noise, the grid's ε = ∞ baseline); δ in (0, 1/N); a strategy
    that composes. Without dp_clip, no other DP setting may be given (it would do nothing)."""
    clip = values.get("dp_clip")
    if clip is None:
        given = [name for name in DP_OPTIONS if values.get(name) is not None]
        given += [SEEDED_FLAG] if values.get(SEEDED_FLAG) else []
        if given:
            raise ValueError(f"{given[0]} = {values[given[0]]!r} needs dp_clip (client-level DP is "
                             "on only with a clip norm, e.g. --dp-clip 1.0)")
        return
    _number("dp_clip", clip)
    noise, target = values.get("dp_noise"), values.get("dp_target_epsilon")
    if (noise is None) == (target is None):
        raise ValueError("dp_clip needs exactly one of dp_noise (the noise multiplier z) and "
                         f"dp_target_epsilon (solve z for that epsilon); got dp_noise={noise!r}, "
                         f"dp_target_epsilon={target!r}")
    if noise is not None:
        _number("dp_noise", noise)
    elif not (isinstance(target, float) and math.isinf(target) and target > 0):  # inf: clipping only
        _number("dp_target_epsilon", target)
    delta, clients = values.get("dp_delta"), values["clients"]
    if delta is not None and not (_number("dp_delta", delta) < 1.0 / clients):
        raise ValueError(f"dp_delta must be below 1/clients = {1.0 / clients:.3g} (a larger delta "
                         f"allows publishing one client's data outright), got {delta!r}")
    strategy = values.get("strategy", "fedavg")
    why = needs_individual(strategy)
    if why:  # what the server sees of each client would be outside the noised mean, unnoised
        raise ValueError(f"strategy {strategy!r} does not compose with client-level DP ({why}, outside "
                         f"the noised mean); with dp_clip use one of {', '.join(mean_only_strategies())}")
