"""LoRA-aware aggregation: FFA-LoRA, FLoRA, FedEx-LoRA, FedSA-LoRA, rank padding and their bytes (pure torch).

A state maps peft's parameter names to tensors; each adapted layer has `<layer>.lora_A.<adapter>.weight`
(A, r×k) and `<layer>.lora_B.<adapter>.weight` (B, d×r), and the layer's update is s·B A with
s = α/r. Client weights p_k = w_k / Σ w (the clients' training example counts).

- FFA-LoRA (Sun et al., 2024, "Improving LoRA in privacy-preserving federated learning"): A stays
  at its seeded initialisation on every client; only B is trained, sent and averaged. Since every
  A_k = A, Σ p_k B_k A = B̄ A: the average is exact, and only B travels.
- FLoRA (Wang et al., 2024, "FLoRA: federated fine-tuning ... with heterogeneous low-rank
  adaptations"): the server stacks the clients' factors, Σ p_k s_k B_k A_k = [p_1 s_1 B_1 …][A_1; …],
  merges that exact mean update into the base weights, and the next round starts from fresh
  adapters. The downlink carries the stacked factors (rank Σ r_k).
- FedEx-LoRA (Singhal et al., 2025, "Exact aggregation for federated and efficient fine-tuning"):
  FedAvg of A and B, plus the residual s(Σ p_k B_k A_k − B̄ Ā) folded into the base weights, so
  base + s B̄ Ā carries the exact mean update. The residual is a dense d×k matrix per layer.
- FedSA-LoRA (Guo et al., 2025, "Selective aggregation for LoRA in federated learning"): only A is
  shared and averaged; each client keeps its own B. The server's global model uses the mean B.

Deltas (what gets merged into a base weight) are returned per layer name, in fp32.
"""

from __future__ import annotations

from typing import Sequence

import torch

State = dict[str, torch.Tensor]
Deltas = dict[str, torch.Tensor]
_A, _B = ".lora_A.", ".lora_B."


def layer_factors(state: State) -> dict[str, tuple[str, str]]:
    """Each adapted layer's name → (key of its A, key of its B), in the state's order."""
    a_keys = {k.split(_A)[0]: k for k in state if _A in k}
    b_keys = {k.split(_B)[0]: k for k in state if _B in k}
    if a_keys.keys() != b_keys.keys():
        odd = sorted(a_keys.keys() ^ b_keys.keys())
        raise ValueError(f"LoRA layers need both lora_A and lora_B; unpaired: {', '.join(odd[:3])}")
    return {layer: (a_keys[layer], b_keys[layer]) for layer in a_keys}


def base_weight_name(layer: str) -> str:
    """peft's name of the frozen weight a LoRA layer wraps (where a delta is merged)."""
    return f"{layer}.base_layer.weight"


def factor_keys(state: State, factor: str) -> list[str]:
    """Keys of every A (factor 'A') or every B (factor 'B') of a state."""
    marker = {"A": _A, "B": _B}[factor]
    return [k for k in state if marker in k]


def normalized_weights(weights: Sequence[float]) -> torch.Tensor:
    """p_k = w_k / Σ w as float64; weights must be non-negative with a positive sum."""
    if len(weights) == 0:
        raise ValueError("aggregation needs at least one client, got none")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"client weights must be >= 0 with a positive sum, got {list(weights)}")
    w = torch.tensor([float(x) for x in weights], dtype=torch.float64)
    return w / w.sum()


def _mean(tensors: Sequence[torch.Tensor], p: torch.Tensor) -> torch.Tensor:
    acc = sum(w * t.to(torch.float64) for w, t in zip(p, tensors))
    return acc.to(tensors[0].dtype)


def average_keys(states: Sequence[State], weights: Sequence[float], keys: Sequence[str]) -> State:
    """Weighted mean of the named tensors only (accumulated in float64)."""
    p = normalized_weights(weights)
    return {k: _mean([s[k] for s in states], p) for k in keys}


def _check_states(states: Sequence[State], weights: Sequence[float]) -> None:
    if len(states) != len(weights):
        raise ValueError(f"got {len(states)} client states but {len(weights)} weights")
    for i, state in enumerate(states[1:], start=1):
        if state.keys() != states[0].keys():
            raise ValueError(f"state {i} has different tensor names than state 0")


def _scales(scaling: float | Sequence[float], count: int) -> list[float]:
    """One LoRA scaling s_k = α/r_k per client (a single number applies to all)."""
    return [float(scaling)] * count if isinstance(scaling, (int, float)) else [float(s) for s in scaling]


def mean_update(states: Sequence[State], weights: Sequence[float],
                scaling: float | Sequence[float]) -> Deltas:
    """Σ p_k s_k B_k A_k of every layer as one stacked product [p_k s_k B_k …] @ [A_k; …] (fp32)."""
    _check_states(states, weights)
    p = normalized_weights(weights)
    s = _scales(scaling, len(states))
    out = {}
    for layer, (a_key, b_key) in layer_factors(states[0]).items():
        b = torch.cat([w * sk * st[b_key].to(torch.float64) for w, sk, st in zip(p, s, states)], dim=1)
        a = torch.cat([st[a_key].to(torch.float64) for st in states], dim=0)
        out[layer] = (b @ a).to(torch.float32)
    return out


def fedavg_factors(states: Sequence[State], weights: Sequence[float]) -> State:
    """FedAvg of every tensor (A and B averaged separately), float64 accumulation."""
    _check_states(states, weights)
    return average_keys(states, weights, list(states[0]))


def ffa_lora(states: Sequence[State], weights: Sequence[float]) -> State:
    """FFA-LoRA: B averaged, A kept (every client must still hold the same, frozen A)."""
    _check_states(states, weights)
    for key in factor_keys(states[0], "A"):
        if not all(torch.equal(s[key], states[0][key]) for s in states[1:]):
            raise ValueError(f"FFA-LoRA needs every client to keep A frozen; clients differ in {key}")
    out = average_keys(states, weights, factor_keys(states[0], "B"))
    return {k: out[k] if k in out else states[0][k] for k in states[0]}


def flora(states: Sequence[State], weights: Sequence[float], scaling: float | Sequence[float],
          fresh: State) -> tuple[State, Deltas]:
    """FLoRA: the exact mean update as base-weight deltas; the next round starts from `fresh`."""
    return {k: v.clone() for k, v in fresh.items()}, mean_update(states, weights, scaling)


def fedex_lora(states: Sequence[State], weights: Sequence[float],
               scaling: float) -> tuple[State, Deltas]:
    """FedEx-LoRA: FedAvg of A and B, and the residual s(M − B̄Ā) per layer as base-weight deltas."""
    averaged = fedavg_factors(states, weights)
    exact = mean_update(states, weights, scaling)
    residual = {}
    for layer, (a_key, b_key) in layer_factors(averaged).items():
        product = averaged[b_key].to(torch.float64) @ averaged[a_key].to(torch.float64)
        residual[layer] = (exact[layer].to(torch.float64) - scaling * product).to(torch.float32)
    return averaged, residual


def fedsa_lora(states: Sequence[State], weights: Sequence[float]) -> State:
    """FedSA-LoRA's server state: A averaged (shared); B averaged too, for the global model only."""
    return fedavg_factors(states, weights)


def fedsa_client_state(global_state: State, own: State | None) -> State:
    """What a FedSA-LoRA client trains from: the shared A with its own B (the global B before it
    has one of its own, i.e. the initial zero B in a client's first round)."""
    if own is None:
        return dict(global_state)
    b_keys = set(factor_keys(global_state, "B"))
    return {k: own[k] if k in b_keys else v for k, v in global_state.items()}


def own_factors(state: State, factor: str) -> State:
    """The A or B tensors of a state (what FedSA-LoRA keeps per client: its B)."""
    return {k: state[k].clone() for k in factor_keys(state, factor)}


def add_deltas(total: Deltas | None, delta: Deltas) -> Deltas:
    """Running sum of base-weight deltas (fp32), layer by layer."""
    if not total:
        return {k: v.clone() for k, v in delta.items()}
    return {k: total[k] + delta[k] for k in total}


def pad_rank(state: State, rank: int) -> State:
    """Zero-pad every A (r×k → rank×k) and B (d×r → d×rank): s·B A is unchanged (heterogeneous ranks)."""
    out = {}
    for k, t in state.items():
        if _A in k:
            out[k] = torch.nn.functional.pad(t, (0, 0, 0, rank - t.shape[0]))
        elif _B in k:
            out[k] = torch.nn.functional.pad(t, (0, rank - t.shape[1]))
        else:
            out[k] = t
    return out


# ---------------------------------------------------------------- bytes (functions of shapes only)

def factor_bytes(state: State, factor: str, bytes_per_param: int = 4) -> int:
    """Bytes of all A (or all B) tensors of a state."""
    return sum(state[k].numel() for k in factor_keys(state, factor)) * bytes_per_param


def residual_bytes(state: State, bytes_per_param: int = 4) -> int:
    """Bytes of one dense d×k matrix per adapted layer (FedEx-LoRA's residual on the downlink)."""
    return sum(state[b].shape[0] * state[a].shape[1]
               for a, b in layer_factors(state).values()) * bytes_per_param


def transfer_bytes(method: str, state: State, stacked: Sequence[State] = (),
                   bytes_per_param: int = 4) -> tuple[int, int]:
    """(uplink, downlink) bytes per sampled client per round of a method at `state`'s shapes.

    FLoRA's downlink is the stacked factors of the clients `stacked` (the previous round's, rank
    Σ r_k); its fresh adapter comes from the shared seed and costs nothing."""
    a, b = factor_bytes(state, "A", bytes_per_param), factor_bytes(state, "B", bytes_per_param)
    if method == "ffa-lora":
        return b, b
    if method == "fedsa-lora":
        return a, a
    if method == "flora":
        down = sum(factor_bytes(s, "A", bytes_per_param) + factor_bytes(s, "B", bytes_per_param)
                   for s in stacked)
        return a + b, down
    if method == "fedex-lora":
        return a + b, a + b + residual_bytes(state, bytes_per_param)
    return a + b, a + b
