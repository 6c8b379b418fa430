"""FLoRA (Wang et al., 2024, "FLoRA: federated fine-tuning ... with heterogeneous low-rank
adaptations"): the server stacks the clients' factors, Σ p_k s_k B_k A_k = [p_1 s_1 B_1 …][A_1; …],
merges that exact mean update into the base weights, and the next round starts from fresh adapters:
as in the authors' code (a new `get_peft_model` for every sampled client in every round), each
client draws its own A for the round the way peft initialises it, with B zero (`fresh_adapter`).
The downlink carries the stacked factors of the previous round (rank Σ r_k), from which a client
replays the merge (a real deployment must broadcast them to every client, sampled or not, so that
all bases stay equal).
"""

from __future__ import annotations

from typing import Sequence

from cllora.aggregate.base import Aggregated, ClientView, LocalPlan, Options, Reply, State, Strategy
from cllora.aggregate.fedavg import normalized_weights
from cllora.aggregate.lora_math import (
    Deltas,
    base_delta,
    fresh_adapter,
    layer_factors,
    lora_scaling,
    mean_update,
    unzip,
)


def flora(states: Sequence[State], weights: Sequence[float], scaling: float | Sequence[float],
          fresh: State) -> tuple[State, Deltas]:
    """FLoRA: the exact mean update as base-weight deltas; the next round starts from `fresh`."""
    return {k: v.clone() for k, v in fresh.items()}, mean_update(states, weights, scaling)


def flora_init(global_state: State, options: Options) -> State:
    """Keep the fresh (seeded initial) adapter every round starts from."""
    return {f"fresh/{k}": v.clone() for k, v in global_state.items()}


def flora_aggregate(global_state: State, server_state: State, replies: Sequence[Reply],
                    options: Options) -> Aggregated:
    """Merge Σ p_k s B_k A_k into the base; restart from the fresh adapter; keep the stacked
    factors (B pre-scaled by p_k s) as the next downlink, from which a client replays the merge."""
    states, weights = unzip(replies)
    scaling = lora_scaling(options)
    fresh = {k[len("fresh/"):]: v for k, v in server_state.items() if k.startswith("fresh/")}
    new_global, deltas = flora(states, weights, scaling, fresh)
    stack = {}
    for i, (p, state) in enumerate(zip(normalized_weights(weights), states)):
        for a_key, b_key in layer_factors(state).values():
            stack[f"stack/{i}/{a_key}"] = state[a_key].clone()
            stack[f"stack/{i}/{b_key}"] = (state[b_key].double() * (p * scaling)).float()
    kept = {k: v for k, v in server_state.items() if k.startswith("fresh/")}
    return Aggregated(new_global, {**kept, **stack}, base_delta(deltas))


def flora_local(view: ClientView) -> LocalPlan:
    """Train a fresh adapter: A drawn for this client and round, B zero (the global adapter when
    the view has no seed, as in a unit test of the server side)."""
    return LocalPlan(view.global_state if view.seed is None else fresh_adapter(view.global_state, view.seed))


def flora_downlink(server_state: State) -> State:
    return {k: v for k, v in server_state.items() if k.startswith("stack/")}


FLORA = Strategy("flora", "Wang et al. 2024: W ← W + Σ p_k (α/r) B_k A_k (stacked), fresh adapters each "
                 "round; downlink: the stacked factors (rank Σ r_k)", flora_aggregate,
                 init_server=flora_init, downlink=flora_downlink, local=flora_local,
                 individual="the server stacks every client's own factors (B_k A_k) and merges them "
                            "into the base weights")
