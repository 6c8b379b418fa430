"""The LoRA math the LoRA-aware strategies share (pure: tensors in, tensors out; torch is used
through tensor methods, so importing this module does not import torch): which tensors are A and
which B, the exact mean update Σ p_k s_k B_k A_k as one stacked product, the running total of what
was merged into the frozen base weights, and the merged weights themselves.

A state maps peft's parameter names to tensors; each adapted layer has `<layer>.lora_A.<adapter>.weight`
(A, r×k) and `<layer>.lora_B.<adapter>.weight` (B, d×r), and the layer's update is s·B A with
s = α/r. Client weights p_k = w_k / Σ w (the clients' training example counts; the mean itself is
cllora.aggregate.fedavg's `weighted_mean`).

Deltas (what gets merged into a base weight) are per layer name, in fp32; the engine adds them to
the one shared base model (`experiment.merge_into_base`).
"""

from __future__ import annotations

import math
from typing import Sequence

from cllora.aggregate.base import Options, Reply, State
from cllora.aggregate.fedavg import average_keys, normalized_weights

Deltas = dict  # layer name → d×k fp32 tensor to add to that layer's base weight
_A, _B = ".lora_A.", ".lora_B."


def is_a(name: str) -> bool:
    return _A in name


def is_b(name: str) -> bool:
    return _B in name


def layer_factors(state: State) -> dict[str, tuple[str, str]]:
    """Each adapted layer's name → (key of its A, key of its B), in the state's order."""
    a_keys = {k.split(_A)[0]: k for k in state if is_a(k)}
    b_keys = {k.split(_B)[0]: k for k in state if is_b(k)}
    if a_keys.keys() != b_keys.keys():
        odd = sorted(a_keys.keys() ^ b_keys.keys())
        raise ValueError(f"LoRA layers need both lora_A and lora_B; unpaired: {', '.join(odd[:3])}")
    return {layer: (a_keys[layer], b_keys[layer]) for layer in a_keys}


def base_weight_name(layer: str) -> str:
    """peft's name of the frozen weight a LoRA layer wraps (where a delta is merged)."""
    return f"{layer}.base_layer.weight"


def factor_keys(state: State, factor: str) -> list[str]:
    """Keys of every A (factor 'A') or every B (factor 'B') of a state."""
    return [k for k in state if (is_a if factor == "A" else is_b)(k)]


def check_states(states: Sequence[State], weights: Sequence[float]) -> None:
    """As many weights as states, and every state with state 0's tensor names."""
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
    """Σ p_k s_k B_k A_k of every layer as one stacked product [p_1 s_1 B_1 … p_K s_K B_K] @
    [A_1; …; A_K] (float64, fp32 result): the exact mean update."""
    import torch  # lazy: the registry (read by config and the CLI) must not import torch

    check_states(states, weights)
    coefficients = [w * s for w, s in zip(normalized_weights(weights), _scales(scaling, len(states)))]
    out = {}
    for layer, (a_key, b_key) in layer_factors(states[0]).items():
        b = torch.cat([st[b_key].double() * c for c, st in zip(coefficients, states)], dim=1)
        a = torch.cat([st[a_key].double() for st in states], dim=0)
        out[layer] = (b @ a).float()
    return out


def fedavg_factors(states: Sequence[State], weights: Sequence[float]) -> State:
    """FedAvg of every tensor (A and B averaged separately), float64 accumulation."""
    check_states(states, weights)
    return average_keys(states, weights, list(states[0]))


def own_factors(state: State, factor: str) -> State:
    """The A or B tensors of a state (what FedSA-LoRA keeps per client: its B)."""
    return {k: state[k].clone() for k in factor_keys(state, factor)}


def add_deltas(total: Deltas | None, delta: Deltas) -> Deltas:
    """Running sum of base-weight deltas (fp32), layer by layer."""
    if not total:
        return {k: v.clone() for k, v in delta.items()}
    return {k: total[k] + delta[k] for k in total}


def merged_base(originals: State, total: State) -> State:
    """Each merged base weight W = W₀ + ΣΔ, summed in fp32 and cast to W₀'s dtype. Always from the
    original W₀ and the running total (never in place, round after round), so a resumed run that
    restores the total gets the very same weights; in bf16 the merge is rounded to bf16 once."""
    return {name: (originals[name].float() + total[name].to(originals[name].device)).to(originals[name].dtype)
            for name in total}


def lora_scaling(options: Options) -> float:
    """peft's LoRA scaling s = α / r (the run's lora_alpha and rank)."""
    return float(options["lora_alpha"]) / float(options["rank"])


def unzip(replies: Sequence[Reply]) -> tuple[list[State], list[float]]:
    """(the replies' adapter states, their weights)."""
    return [r.state for r in replies], [r.weight for r in replies]


def base_delta(deltas: Deltas) -> State:
    """Per-layer deltas keyed by the base weight they are added to (`Aggregated.base_delta`)."""
    return {base_weight_name(layer): d for layer, d in deltas.items()}


def fresh_adapter(like: State, seed: int) -> State:
    """A new adapter shaped like `like`: every A drawn as peft initialises it (Kaiming-uniform with
    a = √5, i.e. U(−1/√fan_in, 1/√fan_in)) from a generator seeded with `seed`, every B zero."""
    import torch  # lazy: the package's registry is read without torch

    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key in sorted(like):
        value = like[key]
        fresh = torch.zeros(value.shape, dtype=torch.float32)
        if is_a(key):
            torch.nn.init.kaiming_uniform_(fresh, a=math.sqrt(5), generator=gen)
        out[key] = fresh.to(value.dtype)
    return {k: out[k] for k in like}

