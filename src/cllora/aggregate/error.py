"""The aggregation error of averaging LoRA factors separately, computed in rank space (pure torch).

Client k's update of an adapted layer is B_k A_k (B: d×r, A: r×k). The true weighted average of
the updates is M = Σ p_k B_k A_k, but FedAvg on the factors gives B̄ Ā (B̄ = Σ p_k B_k,
Ā = Σ p_k A_k, p_k = w_k / Σ w). The error is

    E = M − B̄ Ā = Σ p_k (B_k − B̄)(A_k − Ā).

Both sides of that identity are products of stacked factors, so their Frobenius norms come from
Gram matrices of size (K·r)×(K·r) without forming any d×k matrix:

    M = B_s A_s  with  B_s = [√p_1 B_1 … √p_K B_K],  A_s = [√p_1 A_1; …; √p_K A_K]
    ‖M‖²_F = tr((B_sᵀ B_s)(A_s A_sᵀ)) = Σ_ij (B_sᵀB_s)_ij (A_s A_sᵀ)_ij

and E likewise with the centred factors √p_k (B_k − B̄), √p_k (A_k − Ā) (no cancellation: E is
exactly zero when the clients agree on A or on B, as FFA-LoRA's frozen A makes them).

The error is put on the scale of *this round's* mean update U = M − B_g A_g, where B_g A_g is the
adapter the clients started from (the global one; FLoRA's fresh one, whose B is 0). U stacks the
same way, with the global factors as one more term of weight −1 (Σ p_k = 1):

    U = [√p_1 B_1 … √p_K B_K  B_g] [√p_1 A_1; …; √p_K A_K; −A_g]

Dividing by ‖M‖ instead would use the clients' *cumulative* product since round 0 for FedAvg and
FedEx-LoRA (whose error would then fall by construction) and one round's for FLoRA: not one scale.

Reported per round (the LoRA scaling α/r is common to every term and cancels):
    agg_error           = sqrt(Σ_l ‖E_l‖²) / sqrt(Σ_l ‖U_l‖²)   (over all adapted layers l)
    agg_error_max_layer = max_l ‖E_l‖ / ‖U_l‖                  (layers with U_l = 0 skipped)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from cllora.aggregate.base import State
from cllora.aggregate.fedavg import normalized_weights, weighted_mean
from cllora.aggregate.lora_math import layer_factors

if TYPE_CHECKING:
    import torch

ERROR_COLUMNS = ("agg_error", "agg_error_max_layer")  # rounds.csv columns (empty in round 0)


@dataclass(frozen=True)
class LayerError:
    """Squared Frobenius norms of one layer's error E and of this round's true mean update U."""

    error_sq: float
    mean_sq: float

    @property
    def relative(self) -> float:
        """‖E‖/‖U‖; 0 when both are zero, NaN when only U is."""
        return _ratio(self.error_sq, self.mean_sq)


def _ratio(num_sq: float, den_sq: float) -> float:
    if den_sq > 0:
        return math.sqrt(max(num_sq, 0.0) / den_sq)
    return 0.0 if num_sq <= 0 else float("nan")


def _stacked_norm_sq(bs: Sequence[torch.Tensor], as_: Sequence[torch.Tensor]) -> float:
    """‖Σ_k B_k A_k‖²_F via the Gram matrices of the stacked factors (never forms d×k)."""
    import torch

    b = torch.cat(list(bs), dim=1)  # d × Σr
    a = torch.cat(list(as_), dim=0)  # Σr × k
    return float(((b.T @ b) * (a @ a.T)).sum())


def layer_error(a_list: Sequence[torch.Tensor], b_list: Sequence[torch.Tensor],
                p: Sequence[float], a_ref: torch.Tensor | None = None,
                b_ref: torch.Tensor | None = None) -> LayerError:
    """E and U of one layer in rank space; `p` are the normalized client weights, (a_ref, b_ref)
    the factors the clients started from (None: zero, so U = M)."""
    a = [x.double() for x in a_list]
    b = [x.double() for x in b_list]
    a_bar, b_bar = weighted_mean(a, p), weighted_mean(b, p)
    root = [math.sqrt(w) for w in p]
    bs, as_ = [w * x for w, x in zip(root, b)], [w * x for w, x in zip(root, a)]
    if a_ref is not None and b_ref is not None:
        bs, as_ = bs + [b_ref.double()], as_ + [-a_ref.double()]
    mean_sq = _stacked_norm_sq(bs, as_)
    error_sq = _stacked_norm_sq([w * (x - b_bar) for w, x in zip(root, b)],
                                [w * (x - a_bar) for w, x in zip(root, a)])
    return LayerError(error_sq, mean_sq)


def layer_error_dense(a_list: Sequence[torch.Tensor], b_list: Sequence[torch.Tensor],
                      p: Sequence[float], a_ref: torch.Tensor | None = None,
                      b_ref: torch.Tensor | None = None) -> LayerError:
    """The same quantities from the materialised d×k products (for tests and small layers)."""
    a = [x.double() for x in a_list]
    b = [x.double() for x in b_list]
    mean = weighted_mean([y @ x for x, y in zip(a, b)], p)
    error = mean - weighted_mean(b, p) @ weighted_mean(a, p)
    update = mean if a_ref is None or b_ref is None else mean - b_ref.double() @ a_ref.double()
    return LayerError(float((error ** 2).sum()), float((update ** 2).sum()))


def layer_errors(states: Sequence[State], weights: Sequence[float], reference: State | None = None, *,
                 dense: bool = False) -> dict[str, LayerError]:
    """Each adapted layer's error (by layer name) for clients' adapter states and weights, on the
    scale of the update from `reference` (the adapter they started from; None: from zero)."""
    p = normalized_weights(weights)
    compute = layer_error_dense if dense else layer_error
    out = {}
    for layer, (a_key, b_key) in layer_factors(states[0]).items():
        ref = (reference[a_key], reference[b_key]) if reference is not None else (None, None)
        out[layer] = compute([s[a_key] for s in states], [s[b_key] for s in states], p, *ref)
    return out


def aggregation_error(states: Sequence[State], weights: Sequence[float], reference: State | None = None,
                      *, dense: bool = False) -> dict[str, float]:
    """`agg_error` (all layers together) and `agg_error_max_layer` of one round's client adapters,
    relative to this round's mean update from `reference` (the global adapter they started from)."""
    per_layer = layer_errors(states, weights, reference, dense=dense)
    total = _ratio(sum(e.error_sq for e in per_layer.values()),
                   sum(e.mean_sq for e in per_layer.values()))
    relative = [e.relative for e in per_layer.values() if e.mean_sq > 0]
    return dict(zip(ERROR_COLUMNS, (total, max(relative, default=0.0))))
