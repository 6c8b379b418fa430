"""Server optimizers on the pseudo-gradient Δ_t = (weighted mean of client adapters) − x_t.

FedAvgM (Hsu, Qi & Brown 2019, "Measuring the Effects of Non-Identical Data Distribution for
Federated Visual Classification", server momentum):
    v_t = β v_{t−1} + Δ_t,   x_{t+1} = x_t + η v_t          (v_0 = 0; η = 1, β = 0 is FedAvg)
Default β = 0.9 (OpenFedLLM's default server momentum); default η = 1 − β (below).

FedAdagrad, FedAdam, FedYogi (Reddi et al. 2021, "Adaptive Federated Optimization", ICLR,
Algorithm 2), all with m_{−1} = 0, v_{−1} = τ² (the paper asks v_{−1} ≥ τ²):
    m_t = β1 m_{t−1} + (1 − β1) Δ_t
    FedAdagrad: v_t = v_{t−1} + Δ_t²
    FedAdam:    v_t = β2 v_{t−1} + (1 − β2) Δ_t²
    FedYogi:    v_t = v_{t−1} − (1 − β2) Δ_t² sign(v_{t−1} − Δ_t²)
    x_{t+1} = x_t + η m_t / (√v_t + τ)
Algorithm 2 has no bias correction (unlike Adam's 1 − β^t terms), and none is applied here; τ is the
paper's "degree of adaptivity" (small τ: more adaptive). Δ_t is FedAvg-weighted (the paper's mean
is uniform over the sampled clients). Arithmetic in float64; the state is stored in the adapter's
dtype under "m/<name>", "v/<name>" (FedAvgM: "momentum/<name>").
"""

from __future__ import annotations

from typing import Callable, Sequence

from cllora.aggregate.base import Aggregated, Option, Options, Reply, State, Strategy
from cllora.aggregate.fedavg import pseudo_gradient

SERVER_LR = Option("server_lr", None, "server learning rate eta of fedavgm/fedadam/fedyogi/fedadagrad; "
                   "none = 1 - server_momentum for fedavgm, 0.01 for the adaptive ones", "ETA", low_open=True)
SERVER_MOMENTUM = Option("server_momentum", 0.9, "fedavgm: server momentum beta (Hsu et al. 2019)", "B",
                         below=1.0)
BETA1 = Option("beta1", 0.9, "fedadam/fedyogi/fedadagrad: first-moment decay (Reddi et al. 2021)", "B1",
               below=1.0)
BETA2 = Option("beta2", 0.99, "fedadam/fedyogi: second-moment decay (Reddi et al. 2021)", "B2", below=1.0)
TAU = Option("tau", 1e-3, "fedadam/fedyogi/fedadagrad: adaptivity tau added to sqrt(v) (Reddi et al. 2021)",
             "TAU", low_open=True)


def fedavgm_default_lr(options: Options) -> float:
    """FedAvgM's η when unset: 1 − β, so the effective learning rate η/(1 − β) that Hsu et al.
    analyse is 1: for a steady Δ the step tends to FedAvg's, and η v_t is then the running mean
    of Δ that OpenFedLLM's FedAvgM applies (whose first round takes the full Δ; here 1 − β of it).
    With β = 0 this is η = 1: exactly FedAvg."""
    return 1.0 - options["server_momentum"]


# Adaptive methods' η when unset: 1e-2, our choice. Reddi et al. tune η per task on a log grid and
# give no single default (OpenFedLLM uses 1e-3). Without bias correction and with |Δ| ≫ τ, each adapter
# entry moves by about η per round, comparable to a few local AdamW steps at the client lr.
ADAPTIVE_SERVER_LR = 1e-2


def fedavgm_init(global_state: State, options: Options) -> State:
    return {f"momentum/{k}": x.new_zeros(x.shape) for k, x in global_state.items()}


def fedavgm_aggregate(global_state: State, server_state: State, replies: Sequence[Reply],
                      options: Options) -> Aggregated:
    """Hsu et al. 2019: v = β v + Δ; x = x + η v."""
    lr, beta = options["server_lr"], options["server_momentum"]
    delta = pseudo_gradient(global_state, replies)
    new_global, new_server = {}, {}
    for k, x in global_state.items():
        v = beta * server_state[f"momentum/{k}"].double() + delta[k]
        new_server[f"momentum/{k}"] = v.to(x.dtype)
        new_global[k] = (x.double() + lr * v).to(x.dtype)
    return Aggregated(new_global, new_server)


def adaptive_init(global_state: State, options: Options) -> State:
    """m_{−1} = 0 and v_{−1} = τ² for every adapter tensor (Reddi et al. 2021, Algorithm 2)."""
    tau = options["tau"]
    state = {}
    for k, x in global_state.items():
        state[f"m/{k}"] = x.new_zeros(x.shape)
        state[f"v/{k}"] = x.new_full(x.shape, tau * tau)
    return state


SecondMoment = Callable[[object, object, Options], object]  # (v_{t−1}, Δ_t², options) → v_t


def adagrad_v(v, d2, options: Options):
    return v + d2


def adam_v(v, d2, options: Options):
    beta2 = options["beta2"]
    return beta2 * v + (1.0 - beta2) * d2


def yogi_v(v, d2, options: Options):
    return v - (1.0 - options["beta2"]) * d2 * (v - d2).sign()


def adaptive_aggregate(second_moment: SecondMoment):
    """The server step of Reddi et al.'s Algorithm 2 with the given second-moment rule."""

    def aggregate(global_state: State, server_state: State, replies: Sequence[Reply],
                  options: Options) -> Aggregated:
        lr, beta1, tau = options["server_lr"], options["beta1"], options["tau"]
        delta = pseudo_gradient(global_state, replies)
        new_global, new_server = {}, {}
        for k, x in global_state.items():
            d = delta[k]
            m = beta1 * server_state[f"m/{k}"].double() + (1.0 - beta1) * d
            v = second_moment(server_state[f"v/{k}"].double(), d * d, options)
            new_server[f"m/{k}"], new_server[f"v/{k}"] = m.to(x.dtype), v.to(x.dtype)
            new_global[k] = (x.double() + lr * m / (v.sqrt() + tau)).to(x.dtype)
        return Aggregated(new_global, new_server)

    return aggregate


_REDDI = "Reddi et al. 2021 (Adaptive Federated Optimization, Alg. 2): "
FEDAVGM = Strategy("fedavgm", "Hsu et al. 2019: v ← βv + Δ, x ← x + ηv", fedavgm_aggregate,
                   options=(SERVER_LR, SERVER_MOMENTUM),
                   defaults={"server_lr": fedavgm_default_lr}, init_server=fedavgm_init)
FEDADAGRAD = Strategy("fedadagrad", _REDDI + "v ← v + Δ², x ← x + η m/(√v + τ)",
                      adaptive_aggregate(adagrad_v), options=(SERVER_LR, BETA1, TAU),
                      defaults={"server_lr": ADAPTIVE_SERVER_LR}, init_server=adaptive_init)
FEDADAM = Strategy("fedadam", _REDDI + "v ← β2 v + (1−β2)Δ², x ← x + η m/(√v + τ)",
                   adaptive_aggregate(adam_v), options=(SERVER_LR, BETA1, BETA2, TAU),
                   defaults={"server_lr": ADAPTIVE_SERVER_LR}, init_server=adaptive_init)
FEDYOGI = Strategy("fedyogi", _REDDI + "v ← v − (1−β2)Δ² sign(v − Δ²), x ← x + η m/(√v + τ)",
                   adaptive_aggregate(yogi_v), options=(SERVER_LR, BETA1, BETA2, TAU),
                   defaults={"server_lr": ADAPTIVE_SERVER_LR}, init_server=adaptive_init)
