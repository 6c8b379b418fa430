"""Client drift: how far the clients' adapters moved from the global adapter they started from, and
from each other — the quantity FedProx and SCAFFOLD exist to reduce.

For client adapters y_1..y_K trained from the adapters x_1..x_K they started from (every adapter
tensor flattened into one vector; L2 norms in float64, uniform over clients):
    drift_mean     = (1/K) Σ_k ‖y_k − x_k‖
    drift_max      = max_k ‖y_k − x_k‖
    drift_pairwise = mean over pairs k < l of ‖y_k − y_l‖   (NaN for fewer than two clients)
These are distances in (A, B) parameter space, not between the products B·A. x_k is the global
adapter for most strategies; a FedSA-LoRA client starts from the shared A with its own B, a FLoRA
client from its fresh adapter, a lower-rank client from the global adapter cut to its rank.
"""

from __future__ import annotations

import math
from typing import Sequence

from cllora.aggregate.base import State

DRIFT_COLUMNS = ("drift_mean", "drift_max", "drift_pairwise")


def _distance(a: State, b: State) -> float:
    return math.sqrt(sum(float((a[k].double() - b[k].double()).pow(2).sum()) for k in a))


def client_drift(starts: State | Sequence[State], client_states: Sequence[State]) -> dict[str, float]:
    """drift_mean, drift_max and drift_pairwise of the client adapters (NaN where undefined), from
    where each started: one adapter for all, or one per client."""
    nan = float("nan")
    if not client_states:
        return dict.fromkeys(DRIFT_COLUMNS, nan)
    starts = [starts] * len(client_states) if isinstance(starts, dict) else list(starts)
    from_global = [_distance(y, x) for y, x in zip(client_states, starts)]
    pairs = [_distance(client_states[i], client_states[j])
             for i in range(len(client_states)) for j in range(i + 1, len(client_states))]
    return {"drift_mean": sum(from_global) / len(from_global), "drift_max": max(from_global),
            "drift_pairwise": sum(pairs) / len(pairs) if pairs else nan}
