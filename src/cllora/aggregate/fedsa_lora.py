"""FedSA-LoRA (Guo et al., 2025, "Selective aggregation for LoRA in federated learning"): only A is
shared and averaged; each client keeps its own B (its client state) and trains from the shared A
with it. The server's global model uses the mean B.
"""

from __future__ import annotations

from typing import Sequence

from cllora.aggregate.base import Aggregated, ClientView, LocalPlan, Options, Reply, State, Strategy
from cllora.aggregate.lora_math import fedavg_factors, is_a, is_b, own_factors, unzip


def fedsa_lora(states: Sequence[State], weights: Sequence[float]) -> State:
    """FedSA-LoRA's server state: A averaged (shared); B averaged too, for the global model only."""
    return fedavg_factors(states, weights)


def fedsa_client_state(global_state: State, own: State | None) -> State:
    """What a FedSA-LoRA client trains from: the shared A with its own B; before it has one, B at
    its initialisation (peft initialises B to zero), never the others' B."""
    own = own or {}
    return {k: (own[k] if k in own else v.new_zeros(v.shape)) if is_b(k) else v
            for k, v in global_state.items()}


def fedsa_local(view: ClientView) -> LocalPlan:
    """Start from the shared A and the client's own B (zero before its first round)."""
    return LocalPlan(fedsa_client_state(view.global_state, view.client_state))


def fedsa_finish(view: ClientView, trained: State, steps: int) -> tuple[State, State]:
    """Nothing extra goes up; the client keeps its trained B."""
    return {}, own_factors(trained, "B")


def fedsa_aggregate(global_state: State, server_state: State, replies: Sequence[Reply],
                    options: Options) -> Aggregated:
    return Aggregated(fedsa_lora(*unzip(replies)), server_state)


FEDSA_LORA = Strategy("fedsa-lora", "Guo et al. 2025: A ← Σ p_k A_k shared, each client keeps its own B "
                      "(the global model uses B̄)", fedsa_aggregate, local=fedsa_local,
                      finish=fedsa_finish, shares=is_a, personal=True,
                      individual="each client's own B is kept and evaluated per client")
