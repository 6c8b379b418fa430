"""FFA-LoRA (Sun et al., 2024, "Improving LoRA in privacy-preserving federated learning"): A stays
at its seeded initialisation on every client; only B is trained, sent and averaged. Since every
A_k = A, Σ p_k B_k A = B̄ A: the average is exact, and only B travels (half of FedAvg's bytes at
the same rank).
"""

from __future__ import annotations

from typing import Sequence

from cllora.aggregate.base import Aggregated, ClientView, LocalPlan, Options, Reply, State, Strategy
from cllora.aggregate.fedavg import average_keys
from cllora.aggregate.lora_math import check_states, factor_keys, is_b, unzip


def ffa_lora(states: Sequence[State], weights: Sequence[float], frozen: State) -> State:
    """FFA-LoRA: B averaged over the clients; every A taken from `frozen` (the seeded initial A)."""
    check_states(states, weights)
    averaged = average_keys(states, weights, factor_keys(frozen, "B"))
    return {k: averaged[k] if is_b(k) else v for k, v in frozen.items()}


def ffa_local(view: ClientView) -> LocalPlan:
    """Start from the global adapter; only the B tensors train (A stays at its seeded value)."""
    return LocalPlan(view.global_state, trains=is_b)


def ffa_aggregate(global_state: State, server_state: State, replies: Sequence[Reply],
                  options: Options) -> Aggregated:
    return Aggregated(ffa_lora(*unzip(replies), frozen=global_state), server_state)


FFA_LORA = Strategy("ffa-lora", "Sun et al. 2024: A frozen at its seeded init, only B trained and sent; "
                    "B ← Σ p_k B_k (exact: Σ p_k B_k A = B̄ A)", ffa_aggregate, local=ffa_local, shares=is_b)
