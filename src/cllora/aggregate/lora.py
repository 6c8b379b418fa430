"""LoRA-aware aggregation: FFA-LoRA, FLoRA, FedEx-LoRA, FedSA-LoRA (pure: tensors in,
tensors out; torch is used through tensor methods, so importing this module does not import torch).

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

Deltas (what gets merged into a base weight) are returned per layer name, in fp32; the engine adds
them to the one shared base model (`experiment.merge_into_base`). Bytes are counted by the engine
from each Strategy record (`shares`, `downlink`) per sampled client: FLoRA's downlink is the stacked
factors of the previous round, FedEx-LoRA's its d×k residuals (a real deployment must broadcast
them to every client, sampled or not, so that all bases stay equal).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from cllora.aggregate.base import Aggregated, ClientView, LocalPlan, Options, Reply, Strategy

if TYPE_CHECKING:
    import torch

State = dict  # name → tensor (no torch import at module level: the registry is imported by config)
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


def normalized_weights(weights: Sequence[float]) -> list[float]:
    """p_k = w_k / Σ w; weights must be non-negative with a positive sum."""
    if len(weights) == 0:
        raise ValueError("aggregation needs at least one client, got none")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"client weights must be >= 0 with a positive sum, got {list(weights)}")
    total = float(sum(weights))
    return [float(w) / total for w in weights]


def _mean(tensors: Sequence["torch.Tensor"], p: Sequence[float]) -> "torch.Tensor":
    acc = tensors[0].double() * p[0]
    for w, t in zip(p[1:], tensors[1:]):
        acc += t.double() * w
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
    """Σ p_k s_k B_k A_k of every layer as one stacked product [p_1 s_1 B_1 … p_K s_K B_K] @
    [A_1; …; A_K] (float64, fp32 result): the exact mean update."""
    import torch

    _check_states(states, weights)
    coefficients = [w * s for w, s in zip(normalized_weights(weights), _scales(scaling, len(states)))]
    out = {}
    for layer, (a_key, b_key) in layer_factors(states[0]).items():
        b = torch.cat([st[b_key].double() * c for c, st in zip(coefficients, states)], dim=1)
        a = torch.cat([st[a_key].double() for st in states], dim=0)
        out[layer] = (b @ a).float()
    return out


def fedavg_factors(states: Sequence[State], weights: Sequence[float]) -> State:
    """FedAvg of every tensor (A and B averaged separately), float64 accumulation."""
    _check_states(states, weights)
    return average_keys(states, weights, list(states[0]))


def ffa_lora(states: Sequence[State], weights: Sequence[float], frozen: State) -> State:
    """FFA-LoRA: B averaged over the clients; every A taken from `frozen` (the seeded initial A)."""
    _check_states(states, weights)
    averaged = average_keys(states, weights, factor_keys(frozen, "B"))
    return {k: averaged[k] if is_b(k) else v for k, v in frozen.items()}


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
        product = averaged[b_key].double() @ averaged[a_key].double()
        residual[layer] = (exact[layer].double() - scaling * product).float()
    return averaged, residual


def fedsa_lora(states: Sequence[State], weights: Sequence[float]) -> State:
    """FedSA-LoRA's server state: A averaged (shared); B averaged too, for the global model only."""
    return fedavg_factors(states, weights)


def fedsa_client_state(global_state: State, own: State | None) -> State:
    """What a FedSA-LoRA client trains from: the shared A with its own B; before it has one, B at
    its initialisation (peft initialises B to zero), never the others' B."""
    own = own or {}
    return {k: (own[k] if k in own else v.new_zeros(v.shape)) if is_b(k) else v
            for k, v in global_state.items()}


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


# ---------------------------------------------------------------- the four methods as strategies

def _scaling(options: Options) -> float:
    """peft's LoRA scaling s = α / r (the run's lora_alpha and rank)."""
    return float(options["lora_alpha"]) / float(options["rank"])


def _unzip(replies: Sequence[Reply]) -> tuple[list[State], list[float]]:
    return [r.state for r in replies], [r.weight for r in replies]


def _base_delta(deltas: Deltas) -> State:
    return {base_weight_name(layer): d for layer, d in deltas.items()}


def ffa_local(view: ClientView) -> LocalPlan:
    """Start from the global adapter; only the B tensors train (A stays at its seeded value)."""
    return LocalPlan(view.global_state, trains=is_b)


def ffa_aggregate(global_state: State, server_state: State, replies: Sequence[Reply],
                  options: Options) -> Aggregated:
    return Aggregated(ffa_lora(*_unzip(replies), frozen=global_state), server_state)


def flora_init(global_state: State, options: Options) -> State:
    """Keep the fresh (seeded initial) adapter every round starts from."""
    return {f"fresh/{k}": v.clone() for k, v in global_state.items()}


def flora_aggregate(global_state: State, server_state: State, replies: Sequence[Reply],
                    options: Options) -> Aggregated:
    """Merge Σ p_k s B_k A_k into the base; restart from the fresh adapter; keep the stacked
    factors (B pre-scaled by p_k s) as the next downlink, from which a client replays the merge."""
    states, weights = _unzip(replies)
    scaling = _scaling(options)
    fresh = {k[len("fresh/"):]: v for k, v in server_state.items() if k.startswith("fresh/")}
    new_global, deltas = flora(states, weights, scaling, fresh)
    stack = {}
    for i, (p, state) in enumerate(zip(normalized_weights(weights), states)):
        for a_key, b_key in layer_factors(state).values():
            stack[f"stack/{i}/{a_key}"] = state[a_key].clone()
            stack[f"stack/{i}/{b_key}"] = (state[b_key].double() * (p * scaling)).float()
    kept = {k: v for k, v in server_state.items() if k.startswith("fresh/")}
    return Aggregated(new_global, {**kept, **stack}, _base_delta(deltas))


def flora_downlink(server_state: State) -> State:
    return {k: v for k, v in server_state.items() if k.startswith("stack/")}


def fedex_aggregate(global_state: State, server_state: State, replies: Sequence[Reply],
                    options: Options) -> Aggregated:
    """FedAvg of A and B; the residual goes into the base and, next round, down to the clients."""
    averaged, residual = fedex_lora(*_unzip(replies), scaling=_scaling(options))
    return Aggregated(averaged, {f"residual/{layer}": r for layer, r in residual.items()},
                      _base_delta(residual))


def fedex_downlink(server_state: State) -> State:
    return dict(server_state)


def fedsa_local(view: ClientView) -> LocalPlan:
    """Start from the shared A and the client's own B (zero before its first round)."""
    return LocalPlan(fedsa_client_state(view.global_state, view.client_state))


def fedsa_finish(view: ClientView, trained: State, steps: int) -> tuple[State, State]:
    """Nothing extra goes up; the client keeps its trained B."""
    return {}, own_factors(trained, "B")


def fedsa_aggregate(global_state: State, server_state: State, replies: Sequence[Reply],
                    options: Options) -> Aggregated:
    return Aggregated(fedsa_lora(*_unzip(replies)), server_state)


FFA_LORA = Strategy("ffa-lora", "Sun et al. 2024: A frozen at its seeded init, only B trained and sent; "
                    "B ← Σ p_k B_k (exact: Σ p_k B_k A = B̄ A)", ffa_aggregate, local=ffa_local, shares=is_b)
FLORA = Strategy("flora", "Wang et al. 2024: W ← W + Σ p_k (α/r) B_k A_k (stacked), fresh adapters each "
                 "round; downlink: the stacked factors (rank Σ r_k)", flora_aggregate,
                 init_server=flora_init, downlink=flora_downlink)
FEDEX_LORA = Strategy("fedex-lora", "Singhal et al. 2025: A ← Ā, B ← B̄, W ← W + (α/r)(Σ p_k B_k A_k − B̄Ā); "
                      "downlink: the d×k residual per layer", fedex_aggregate, downlink=fedex_downlink)
FEDSA_LORA = Strategy("fedsa-lora", "Guo et al. 2025: A ← Σ p_k A_k shared, each client keeps its own B "
                      "(the global model uses B̄)", fedsa_aggregate, local=fedsa_local,
                      finish=fedsa_finish, shares=is_a)
MERGES_BASE = (FLORA.name, FEDEX_LORA.name)  # change the base model (server's and clients')
