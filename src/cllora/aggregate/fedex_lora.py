"""FedEx-LoRA (Singhal et al., 2025, "Exact aggregation for federated and efficient fine-tuning"):
FedAvg of A and B, plus the residual s(Σ p_k B_k A_k − B̄ Ā) folded into the base weights, so
base + s B̄ Ā carries the exact mean update. The residual is a dense d×k matrix per layer, and it
is the downlink (a real deployment must broadcast it to every client, sampled or not, so that all
bases stay equal).
"""

from __future__ import annotations

from typing import Sequence

from cllora.aggregate.base import Aggregated, Options, Reply, State, Strategy
from cllora.aggregate.lora_math import (
    Deltas,
    base_delta,
    fedavg_factors,
    layer_factors,
    lora_scaling,
    mean_update,
    unzip,
)


def fedex_lora(states: Sequence[State], weights: Sequence[float],
               scaling: float) -> tuple[State, Deltas]:
    """FedEx-LoRA: FedAvg of A and B, and the residual s(M − B̄Ā) per layer as base-weight deltas."""
    averaged = fedavg_factors(states, weights)
    exact = mean_update(states, weights, scaling)
    residual = {}
    for layer, (a_key, b_key) in layer_factors(averaged).items():
        product = averaged[b_key].double() @ averaged[a_key].double()
        residual[layer] = (exact[layer].double() - scaling * product).float()
    return averaged, residual


def fedex_aggregate(global_state: State, server_state: State, replies: Sequence[Reply],
                    options: Options) -> Aggregated:
    """FedAvg of A and B; the residual goes into the base and, next round, down to the clients."""
    averaged, residual = fedex_lora(*unzip(replies), scaling=lora_scaling(options))
    return Aggregated(averaged, {f"residual/{layer}": r for layer, r in residual.items()},
                      base_delta(residual))


def fedex_downlink(server_state: State) -> State:
    return dict(server_state)


FEDEX_LORA = Strategy("fedex-lora", "Singhal et al. 2025: A ← Ā, B ← B̄, W ← W + (α/r)(Σ p_k B_k A_k − B̄Ā); "
                      "downlink: the d×k residual per layer", fedex_aggregate, downlink=fedex_downlink,
                      individual="the residual merged into the base weights is built from each client's "
                                 "own factors")
