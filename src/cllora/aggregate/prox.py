"""FedProx (Li et al. 2020, "Federated Optimization in Heterogeneous Networks", MLSys): each
client minimises its local loss plus a proximal term over the LoRA tensors,

    h_k(θ) = F_k(θ) + (μ/2) ‖θ − θ_global‖²,

and the server averages as FedAvg does. μ = 0 adds nothing at all (bit-for-bit FedAvg). The default
μ = 0.01 is the common choice in federated LLM fine-tuning (e.g. OpenFedLLM's FedProx default); Li et
al. tune μ over {0.001, 0.01, 0.1, 0.5, 1}.
"""

from __future__ import annotations

from cllora.aggregate.base import ClientView, LocalPlan, Option, Params, Strategy
from cllora.aggregate.fedavg import fedavg_aggregate

PROX_MU = Option("prox_mu", 0.01, "fedprox: weight mu of the proximal term (mu/2)||theta - theta_global||^2; "
                 "0 = FedAvg (0.01: OpenFedLLM's default)", "MU")


def prox_local(view: ClientView) -> LocalPlan:
    """Start from the global adapter; add (μ/2)‖θ − θ_global‖² to every batch's loss when μ > 0."""
    mu = view.options["prox_mu"]
    if mu == 0:
        return LocalPlan(view.global_state)
    anchor: dict = {}

    def loss_term(params: Params):
        total = None
        for name, p in params.items():
            if name not in anchor:
                anchor[name] = view.global_state[name].to(device=p.device, dtype=p.dtype)
            sq = (p - anchor[name]).pow(2).sum()
            total = sq if total is None else total + sq
        return 0.5 * mu * total

    return LocalPlan(view.global_state, loss_term=loss_term)


FEDPROX = Strategy("fedprox", "Li et al. 2020: local loss + (μ/2)‖θ − θ_global‖²; server: FedAvg",
                   fedavg_aggregate, options=(PROX_MU,), local=prox_local)
