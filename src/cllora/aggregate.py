"""Server-side aggregation of adapter states: plain functions over tensors, behind a registry.

A state is a dict of tensor name → fp32 tensor (only the LoRA matrices). New strategies
(FedProx's server side is FedAvg; FedAdam, FedYogi, ...) are one function added to STRATEGIES.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

State = dict[str, torch.Tensor]


def fedavg(states: Sequence[State], weights: Sequence[float]) -> State:
    """Weighted mean of states; weights are the clients' local training example counts."""
    if not states:
        raise ValueError("fedavg needs at least one client state, got none")
    if len(states) != len(weights):
        raise ValueError(f"fedavg got {len(states)} states but {len(weights)} weights")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"fedavg weights must be >= 0 with a positive sum, got {list(weights)}")
    keys = states[0].keys()
    for i, state in enumerate(states[1:], start=1):
        if state.keys() != keys:
            raise ValueError(f"state {i} has different tensor names than state 0")
    total = float(sum(weights))
    out: State = {}
    for key in keys:
        acc = torch.zeros_like(states[0][key], dtype=torch.float64)
        for state, weight in zip(states, weights):
            acc += state[key].to(torch.float64) * (weight / total)
        out[key] = acc.to(states[0][key].dtype)
    return out


STRATEGIES: dict[str, Callable[[Sequence[State], Sequence[float]], State]] = {"fedavg": fedavg}


def aggregate(strategy: str, states: Sequence[State], weights: Sequence[float]) -> State:
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}; got {strategy!r}")
    return STRATEGIES[strategy](states, weights)


def check_update(state: State | None, reference: State) -> str | None:
    """Why a client's update cannot join the average (None when it can): it must hold exactly the
    reference's tensor names, with the same shapes and dtypes, and only finite values."""
    if state is None:
        return "no adapter in the reply"
    if state.keys() != reference.keys():
        extra = sorted(state.keys() - reference.keys())
        missing = sorted(reference.keys() - state.keys())
        return (f"unexpected tensor names (extra: {', '.join(extra[:2]) or 'none'}; "
                f"missing: {', '.join(missing[:2]) or 'none'})")
    for key, ref in reference.items():
        tensor = state[key]
        if not isinstance(tensor, torch.Tensor):
            return f"{key} is a {type(tensor).__name__}, not a tensor"
        if tuple(tensor.shape) != tuple(ref.shape):
            return f"{key} has shape {tuple(tensor.shape)}, expected {tuple(ref.shape)}"
        if tensor.dtype != ref.dtype:
            return f"{key} has dtype {tensor.dtype}, expected {ref.dtype}"
        if not bool(torch.isfinite(tensor).all()):
            return f"{key} holds NaN or Inf"
    return None


def state_nbytes(state: State, bytes_per_param: int = 4) -> int:
    """Bytes one transfer of this state costs (fp32 by default, as the study counts)."""
    return sum(t.numel() for t in state.values()) * bytes_per_param
