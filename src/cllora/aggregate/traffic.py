"""Bytes on the wire: what one transfer of a state costs, at a client's rank, and what each sampled
client of a round receives and sends under a strategy. One count for the engine's rounds.csv
(`round_bytes`) and for `cllora params --strategy` (`simulated_round_bytes`, on meta tensors).

Every parameter travels in fp32 (`BYTES_PER_PARAM`, as the study counts). A client of rank r_k
(cllora.ranks) receives and sends only its leading r_k components of every A (rows) and B
(columns). A sampled client receives the shared adapter tensors (`Strategy.shares`) and the
strategy's downlink; a client that replied sends the shared tensors and its strategy extra. FLoRA's
stacked factors (`stack/<i>/…`) count the components that are not zero padding: the nonzero rows of
A and columns of B, or, where the tensors hold no values (meta), the rank each stacked client had.
Pure: no torch import (tensors through their methods).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from cllora.aggregate.base import Reply, State, Strategy
from cllora.aggregate.lora_math import is_a, is_b

BYTES_PER_PARAM = 4  # fp32


def state_nbytes(state: State, bytes_per_param: int = BYTES_PER_PARAM) -> int:
    """Bytes one transfer of this state costs (fp32 by default, as the study counts)."""
    return sum(t.numel() for t in state.values()) * bytes_per_param


def _stacked_rank(name: str, rows, stacked: Sequence[int] | None) -> int:
    """Components a stacked factor holds: the rank of stacked client i, or its nonzero rows."""
    if stacked is not None:
        return min(stacked[int(name.split("/")[1])], rows.shape[0])
    return int((rows != 0).any(dim=1).sum())


def sent_nbytes(state: State, r: int | None = None, stacked: Sequence[int] | None = None,
                bytes_per_param: int = BYTES_PER_PARAM) -> int:
    """Bytes of one transfer of `state` at rank r (every A r×k, every B d×r; None: as stored).
    Stacked factors (FLoRA's downlink, `stack/<i>/…`) count their components that are not zero
    padding; `stacked` gives each stacked client's rank instead (for tensors without values)."""
    total = 0
    for name, t in state.items():
        if is_a(name):
            keep = _stacked_rank(name, t, stacked) if name.startswith("stack/") \
                else min(r or t.shape[0], t.shape[0])
            total += keep * t.shape[1]
        elif is_b(name):
            keep = _stacked_rank(name, t.T, stacked) if name.startswith("stack/") \
                else min(r or t.shape[1], t.shape[1])
            total += t.shape[0] * keep
        else:
            total += t.numel()
    return total * bytes_per_param


def round_bytes(strategy: Strategy, adapter: State, downlink: State,
                sampled: Sequence[tuple[int, State | None]], stacked: Sequence[int] | None = None) -> tuple[int, int]:
    """(uplink, downlink) bytes of a round. `sampled` holds one (rank, extra) per sampled client:
    every one receives the shared adapter tensors and the downlink; one whose `extra` is not None
    replied with an adapter, and sent the shared tensors and that extra; each at its rank."""
    shared = {k: v for k, v in adapter.items() if strategy.shares(k)}
    down = sum(sent_nbytes(shared, rank) + sent_nbytes(downlink, rank, stacked) for rank, _ in sampled)
    up = sum(sent_nbytes(shared, rank) + sent_nbytes(extra, rank)
             for rank, extra in sampled if extra is not None)
    return up, down


def simulated_round_bytes(strategy: Strategy, adapter: State, options: Mapping[str, Any],
                          ranks: Sequence[int], previous: Sequence[int] | None = None) -> tuple[int, int]:
    """`round_bytes` of a round in which clients of `ranks` are sampled and all reply, after a
    round that sampled clients of ranks `previous` (None: the first round): the downlink is the
    strategy's after one server step on their replies. Shapes only: on meta tensors, nothing is
    computed."""
    server = strategy.init_server(adapter, options)
    if previous:
        replies = [Reply(adapter, 1.0, strategy.uplink(adapter), i) for i in range(len(previous))]
        server = strategy.aggregate(adapter, server, replies, options).server_state
    extra = strategy.uplink(adapter)
    return round_bytes(strategy, adapter, strategy.downlink(server), [(r, extra) for r in ranks],
                       stacked=previous)
