"""Secure aggregation (SecAgg+ through Flower) as settings: which strategies compose with it, the
protocol's shares and threshold for a round, and how far the securely summed mean can be from the
exact one (its quantisation).

Pure: plain values in, a ValueError naming the setting and its value out (`cllora.config` words it as
the user's error). The protocol itself is Flower's (`SecAggPlusWorkflow`, `secaggplus_mod`):
each client uploads its adapter times its weight, clipped to [-CLIP_RANGE, CLIP_RANGE], stochastically
rounded to QUANT_LEVELS levels and masked; the server learns only the sum, and from it the weighted
mean of the adapters of the clients that got through.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from cllora.aggregate import mean_only_strategies, needs_individual

CLIP_RANGE = 8.0  # Flower's default clipping_range: each weighted adapter entry is clipped to ±8
QUANT_LEVELS = 2 ** 22  # Flower's default quantization_range
MOD_RANGE = 2 ** 32  # Flower's default modulus_range (masks are drawn mod 2^32)

# what the server cannot compute without the individual updates (config.json names them)
NOT_COMPUTED = ("payload checks of each update (names, shapes, finite values; only the sum is checked)",
                "client drift (drift_mean, drift_max, drift_pairwise)",
                "aggregation error (agg_error_*)", "local models scored on the global test set",
                "per-client DP clip statistics")
SETTINGS = ("secagg_shares", "secagg_threshold")  # read only when secagg is on


def _count(name: str, value: Any, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return value


def check_secagg_settings(values: dict[str, Any]) -> None:
    """The SecAgg+ settings of a run (`values`: its settings by name) are consistent: shares and
    threshold within the round's sample, a strategy whose server needs only the weighted mean, equal
    ranks, no central DP and no server-side scoring of local models. Without secagg, no SecAgg+
    setting may be given (it would do nothing)."""
    if not values.get("secagg"):
        given = [name for name in SETTINGS if values.get(name) is not None]
        if given:
            raise ValueError(f"{given[0]} = {values[given[0]]!r} needs secagg (secure aggregation is on "
                             "only with --secagg)")
        return
    protocol(values["clients_per_round"], values.get("secagg_shares"), values.get("secagg_threshold"))
    strategy = values.get("strategy", "fedavg")
    why = needs_individual(strategy)
    if why:  # secure aggregation reveals only the sum
        raise ValueError(f"strategy {strategy!r} does not work with secure aggregation ({why}, but the "
                         f"server learns only the sum); with secagg use one of {', '.join(mean_only_strategies())}")
    if values.get("client_ranks"):
        raise ValueError(f"client_ranks = {values['client_ranks']!r} does not work with secure aggregation: "
                         "clients of different ranks send adapters of different shapes, which cannot be "
                         "summed entry by entry; leave client_ranks out")
    if values.get("dp_clip") is not None:
        raise ValueError(f"dp_clip = {values['dp_clip']!r} with secagg: central DP clips each update and "
                         "adds noise on the server, which secure aggregation exists to keep from seeing "
                         "them; the sound variant would be distributed DP (each client adds its share of "
                         "the noise before masking), which cllora does not implement; choose one")
    if values.get("eval_local_models"):
        raise ValueError(f"eval_local_models = {values['eval_local_models']!r} with secagg: scoring a "
                         "client's local model on the global test set needs its individual adapter, which "
                         "the server never sees; set it to 0")


def protocol(sampled: int, shares: int | None, threshold: int | None) -> tuple[int, int]:
    """(shares, threshold) of a round that samples `sampled` clients. Each client's secrets are
    split into `shares` (default: every sampled client, itself included); `threshold` of them
    rebuild one (default: a majority, at least 2). A round completes while every client keeps at
    least `threshold` live neighbours: it survives `shares - threshold` dropouts among them."""
    if sampled < 2:
        raise ValueError(f"secure aggregation needs at least 2 clients a round (a sum of one update is "
                         f"that update), got clients_per_round = {sampled}")
    shares = sampled if shares is None else _count("secagg_shares", shares, min(3, sampled), sampled)
    if shares < sampled and shares % 2 == 0:
        raise ValueError(f"secagg_shares must be odd when below clients_per_round ({sampled}): each client "
                         f"shares with as many neighbours on either side, got {shares}")
    threshold = max(2, shares // 2 + 1) if threshold is None else \
        _count("secagg_threshold", threshold, 2, shares if shares == sampled else shares - 1)
    return shares, threshold


def mean_error_bound(weights: Sequence[float], max_weight: float, clip: float = CLIP_RANGE,
                     levels: int = QUANT_LEVELS) -> float:
    """Bound on |securely aggregated mean - exact weighted mean| for every entry, for adapters whose
    entries lie in [-clip, clip] and weights at most max_weight. Each of n clients sends its adapter
    times r_i = round(w_i / max_weight * levels) / levels, stochastically rounded to one level
    (2 clip / levels): the sum is off by < n levels, and r_i is off from w_i / max_weight by at
    most 1/(2 levels), which moves a weighted mean of entries within 2 clip by at most
    n clip / levels more; both are divided by the sum of the r_i. Total: 3 n clip / (levels * sum r_i)."""
    n = len(weights)
    if n == 0:
        return math.nan
    ratio_sum = sum(w / max_weight for w in weights) - n / (2 * levels)
    return 3 * n * clip / (levels * ratio_sum)
