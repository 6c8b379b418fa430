"""FedAvg (McMahan et al., 2017): the example-weighted mean of the clients' adapters, and the
pseudo-gradient that the server optimizers step along.

    x_{t+1} = Σ_k (n_k / n) y_k        (y_k: client k's adapter, n_k its training examples)
    Δ_t     = Σ_k (n_k / n) y_k − x_t  (Reddi et al. 2021's Δ_t, weighted as FedAvg is)

Sums run in float64 and are cast back to each tensor's dtype.
"""

from __future__ import annotations

from typing import Sequence

from cllora.aggregate.base import Aggregated, Options, Reply, State, Strategy


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
        acc = states[0][key].double() * (weights[0] / total)
        for state, weight in zip(states[1:], weights[1:]):
            acc += state[key].double() * (weight / total)
        out[key] = acc.to(states[0][key].dtype)
    return out


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
