"""SCAFFOLD (Karimireddy et al. 2020, "SCAFFOLD: Stochastic Controlled Averaging for Federated
Learning", ICML, Algorithm 1 with option II), over the adapter tensors.

Server control variate c (server state "c/<name>", sent to every sampled client) and one control
variate c_i per client (client state "c/<name>", kept between rounds; zero before the first).
    client, every local step:  g ← g + c − c_i                       (the drift correction)
    client, after K steps:     c_i⁺ = c_i − c + (x − y_i) / (K η)     (option II; η: client lr)
                               sends y_i and Δc_i = c_i⁺ − c_i      (uplink: "dc/<name>")
    server:                    x ← x + η_g · mean_S(y_i − x)         (η_g = 1: FedAvg of the y_i)
                               c ← c + (|S|/N) · mean_S(Δc_i)       (N: all clients)
so c stays the mean of all N client variates. The y_i are averaged with FedAvg's example weights
(the paper's mean is uniform); the Δc_i uniformly, as the paper says. Option II assumes plain SGD
steps of size η; with --optimizer adamw the correction is still added to the gradient before the
optimizer step (as OpenFedLLM does), but (x − y_i)/(Kη) is then only a rough gradient estimate.
Uplink and downlink each carry one extra adapter-sized tensor set: twice FedAvg's bytes.
"""

from __future__ import annotations

from typing import Sequence

from cllora.aggregate.base import Aggregated, ClientView, LocalPlan, Options, Params, Reply, State, Strategy
from cllora.aggregate.fedavg import average_replies


def scaffold_init(global_state: State, options: Options) -> State:
    return {f"c/{k}": x.new_zeros(x.shape) for k, x in global_state.items()}


def scaffold_uplink(global_state: State) -> State:
    """The extra a client sends: Δc_i, one tensor per adapter tensor."""
    return {f"dc/{k}": x.new_zeros(x.shape) for k, x in global_state.items()}


def scaffold_downlink(server_state: State) -> State:
    return dict(server_state)  # the server control variate c, for every sampled client


def _client_c(view: ClientView) -> State:
    """The client's own c_i (zero before its first round)."""
    return {k: view.client_state.get(f"c/{k}", x.new_zeros(x.shape)) for k, x in view.global_state.items()}


def scaffold_local(view: ClientView) -> LocalPlan:
    """Start from x; after every backward add c − c_i to each adapter gradient."""
    ci = _client_c(view)
    correction = {k: view.downlink[f"c/{k}"] - ci[k] for k in view.global_state}
    on_device: dict = {}

    def grad_hook(params: Params) -> None:
        for name, p in params.items():
            if p.grad is not None:
                if name not in on_device:
                    on_device[name] = correction[name].to(device=p.grad.device, dtype=p.grad.dtype)
                p.grad.add_(on_device[name])

    return LocalPlan(view.global_state, grad_hook=grad_hook)


def scaffold_finish(view: ClientView, trained: State, steps: int) -> tuple[State, State]:
    """Option II: c_i⁺ = c_i − c + (x − y_i)/(K η); uplink Δc_i, keep c_i⁺. No step taken: c_i stays."""
    ci = _client_c(view)
    lr = view.options["lr"]
    uplink, keep = {}, {}
    for k, x in view.global_state.items():
        if steps > 0:
            new = (ci[k].double() - view.downlink[f"c/{k}"].double()
                   + (x.double() - trained[k].double()) / (steps * lr)).to(x.dtype)
        else:
            new = ci[k]
        uplink[f"dc/{k}"], keep[f"c/{k}"] = new - ci[k], new
    return uplink, keep


def scaffold_aggregate(global_state: State, server_state: State, replies: Sequence[Reply],
                       options: Options) -> Aggregated:
    """x ← FedAvg of the y_i; c ← c + (1/N) Σ_S Δc_i (= |S|/N times their mean)."""
    num_clients = options["clients"]
    new_c = {}
    for k, x in global_state.items():
        total = sum(r.extra[f"dc/{k}"].double() for r in replies)
        new_c[f"c/{k}"] = (server_state[f"c/{k}"].double() + total / num_clients).to(x.dtype)
    return Aggregated(average_replies(replies), new_c)


SCAFFOLD = Strategy("scaffold", "Karimireddy et al. 2020 (option II): g ← g + c − c_i; "
                    "c_i ← c_i − c + (x − y_i)/(Kη); c ← c + (|S|/N) mean Δc_i", scaffold_aggregate,
                    init_server=scaffold_init, downlink=scaffold_downlink, local=scaffold_local,
                    finish=scaffold_finish, uplink=scaffold_uplink,
                    individual="each client also sends its own control-variate change, which the server "
                               "keeps per client")
