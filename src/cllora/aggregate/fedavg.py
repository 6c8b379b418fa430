"""FedAvg (McMahan et al., 2017) and the one example-weighted mean every strategy averages with:
the mean of the clients' adapters, and the pseudo-gradient that the server optimizers step along.

    x_{t+1} = Σ_k (n_k / n) y_k        (y_k: client k's adapter, n_k its training examples)
    Δ_t     = Σ_k (n_k / n) y_k − x_t  (Reddi et al. 2021's Δ_t, weighted as FedAvg is)

Sums run in float64 and are cast back to each tensor's dtype (`weighted_mean`); the LoRA-aware
strategies (cllora.aggregate.lora_math) and the aggregation error average through the same function.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from cllora.aggregate.base import Aggregated, Options, Reply, State, Strategy

if TYPE_CHECKING:
    import torch


def normalized_weights(weights: Sequence[float]) -> list[float]:
    """p_k = w_k / Σ w; weights must be non-negative with a positive sum."""
    if len(weights) == 0:
        raise ValueError("aggregation needs at least one client, got none")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"client weights must be >= 0 with a positive sum, got {list(weights)}")
    total = float(sum(weights))
    return [float(w) / total for w in weights]


def weighted_mean(tensors: Sequence["torch.Tensor"], p: Sequence[float]) -> "torch.Tensor":
    """Σ_k p_k t_k accumulated in float64 (in order, from the first tensor), cast to the first
    tensor's dtype; `p` are normalized weights (`normalized_weights`)."""
    acc = tensors[0].double() * p[0]
    for w, t in zip(p[1:], tensors[1:]):
        acc += t.double() * w
    return acc.to(tensors[0].dtype)


def average_keys(states: Sequence[State], weights: Sequence[float], keys: Sequence[str]) -> State:
    """Weighted mean of the named tensors only (accumulated in float64)."""
    p = normalized_weights(weights)
    return {k: weighted_mean([s[k] for s in states], p) for k in keys}


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
    return average_keys(states, weights, list(keys))


def average_replies(replies: Sequence[Reply]) -> State:
    return fedavg([r.state for r in replies], [r.weight for r in replies])


def pseudo_gradient(global_state: State, replies: Sequence[Reply]) -> State:
    """Δ_t = weighted mean of the client adapters − global adapter, in float64 (the direction the
    clients moved; Reddi et al. add η·(step along Δ), so no sign flip is needed)."""
    mean = average_replies(replies)
    return {k: mean[k].double() - x.double() for k, x in global_state.items()}


def fedavg_aggregate(global_state: State, server_state: State, replies: Sequence[Reply],
                     options: Options) -> Aggregated:
    return Aggregated(average_replies(replies), server_state)


FEDAVG = Strategy("fedavg", "McMahan et al. 2017: x ← Σ_k (n_k/n) y_k", fedavg_aggregate)
