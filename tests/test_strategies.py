"""Federated strategies against hand computations: server optimizers over two rounds, FedProx's
term and its μ = 0 identity with FedAvg, SCAFFOLD on a heterogeneous least-squares problem,
client drift, and the strategy options' validation."""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cllora.aggregate import STRATEGIES, ClientView, Reply, client_drift, get_strategy, strategy_options
from cllora.config.settings import RunConfig
from cllora.errors import UserError
from cllora.train import Batch, StepHooks, train_local

X0 = [0.0, 1.0]
ROUND1 = [([1.0, 1.0], 1.0), ([0.0, 3.0], 3.0)]  # (client adapter, weight): mean [0.25, 2.5], Δ1 = [0.25, 1.5]
ROUND2_MOVES = [([-0.5, 0.2], 1.0), ([0.1, 0.0], 1.0)]  # client adapter − x1: Δ2 = [-0.2, 0.1]
OPTS = {"server_lr": 0.1, "server_momentum": 0.9, "beta1": 0.9, "beta2": 0.99, "tau": 1e-3,
        "prox_mu": 0.0, "lr": 1e-3, "clients": 2, "rank": 8, "lora_alpha": 16.0}


def two_rounds(name: str, opts: dict = OPTS) -> list[list[float]]:
    """x1 and x2 of a strategy over the two hand-made rounds (the second relative to x1)."""
    strategy = get_strategy(name)
    x = {"w": torch.tensor(X0)}
    server = strategy.init_server(x, opts)
    out = []
    for moves, relative in ((ROUND1, False), (ROUND2_MOVES, True)):
        replies = [Reply({"w": torch.tensor(y) + (x["w"] if relative else 0)}, w) for y, w in moves]
        step = strategy.aggregate(x, server, replies, opts)
        x, server = step.global_state, step.server_state
        out.append(x["w"].tolist())
    return out


def reddi(second_moment) -> list[list[float]]:
    """Reddi et al. 2021, Algorithm 2, element by element in plain floats (no bias correction)."""
    eta, b1, tau = OPTS["server_lr"], OPTS["beta1"], OPTS["tau"]
    x, m, v = list(X0), [0.0, 0.0], [tau * tau] * 2
    out = []
    for delta in ([0.25, 1.5], [-0.2, 0.1]):
        for i, d in enumerate(delta):
            m[i] = b1 * m[i] + (1 - b1) * d
            v[i] = second_moment(v[i], d * d)
            x[i] = x[i] + eta * m[i] / (math.sqrt(v[i]) + tau)
        out.append(list(x))
    return out


def sign(z: float) -> float:
    return (z > 0) - (z < 0)


@pytest.mark.parametrize("name, second_moment", [
    ("fedadagrad", lambda v, d2: v + d2),
    ("fedadam", lambda v, d2: 0.99 * v + 0.01 * d2),
    ("fedyogi", lambda v, d2: v - 0.01 * d2 * sign(v - d2)),  # round 2 takes both signs
])
def test_adaptive_server_optimizers_match_reddi_algorithm_2(name, second_moment):
    got = two_rounds(name)
    for got_round, want_round in zip(got, reddi(second_moment)):
        assert got_round == pytest.approx(want_round, rel=1e-6, abs=1e-7)


def test_fedadam_first_round_by_hand():
    # m1 = 0.1·Δ1; v1 = 0.99·1e-6 + 0.01·Δ1²; x1 = x0 + 0.1·m1/(√v1 + 1e-3)
    x1 = two_rounds("fedadam")[0]
    assert x1[0] == pytest.approx(0.0 + 0.1 * 0.025 / (math.sqrt(0.99e-6 + 0.000625) + 1e-3))
    assert x1[1] == pytest.approx(1.0 + 0.1 * 0.15 / (math.sqrt(0.99e-6 + 0.0225) + 1e-3))


def test_fedavgm_matches_hsu_et_al():
    opts = {**OPTS, "server_lr": 0.5}
    (x1, x2) = two_rounds("fedavgm", opts)
    # v1 = Δ1 = [0.25, 1.5]; x1 = x0 + 0.5 v1; v2 = 0.9 v1 + Δ2; x2 = x1 + 0.5 v2
    assert x1 == pytest.approx([0.125, 1.75])
    assert x2 == pytest.approx([0.125 + 0.5 * (0.225 - 0.2), 1.75 + 0.5 * (1.35 + 0.1)])


def test_fedavgm_without_momentum_at_lr_1_is_fedavg_and_default_lr_is_1_minus_beta():
    plain = two_rounds("fedavg")
    for got, want in zip(two_rounds("fedavgm", {**OPTS, "server_lr": 1.0, "server_momentum": 0.0}), plain):
        assert got == pytest.approx(want)
    opts = strategy_options("fedavgm", {**OPTS, "server_lr": None, "server_momentum": 0.75})
    assert opts["server_lr"] == pytest.approx(0.25)
    assert strategy_options("fedadam", {**OPTS, "server_lr": None})["server_lr"] == 1e-2


STATEFUL = {"fedavgm", "fedadam", "fedyogi", "fedadagrad", "scaffold", "flora", "fedex-lora"}  # server state


def test_every_strategy_is_documented_and_its_server_state_survives_the_checkpoint():
    from pathlib import Path

    from cllora.aggregate.checkpoint_state import pack_state, unpack_state

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    papers = [s.paper for s in STRATEGIES.values()]
    assert len(set(papers)) == len(papers)  # one citation each, not a copied placeholder
    adapter = {"m.q_proj.lora_A.default.weight": torch.randn(2, 3), "m.q_proj.lora_B.default.weight": torch.randn(4, 2)}
    opts = {**OPTS, "lora_alpha": 4.0, "rank": 2}
    for name, strategy in STRATEGIES.items():
        assert strategy.name == name and re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", readme), name
        assert re.search(r"\b(19|20)\d\d\b", strategy.paper), f"{name}: no year in {strategy.paper!r}"
        server = strategy.init_server(adapter, strategy_options(name, {**RunConfig().to_dict(), **opts}))
        replies = [Reply({k: v + i for k, v in adapter.items()}, 1.0 + i, strategy.uplink(adapter), i)
                   for i in range(2)]
        step = strategy.aggregate(adapter, server, replies, strategy_options(name, {**RunConfig().to_dict(), **opts}))
        assert (len(step.server_state) > 0) == (name in STATEFUL), name  # kept, or nothing to keep
        assert all(isinstance(v, torch.Tensor) for v in step.server_state.values()), name
        glob, kept, _ = unpack_state(pack_state(step.global_state, step.server_state, {}))
        assert glob.keys() == step.global_state.keys() and kept.keys() == step.server_state.keys(), name
        assert all(torch.equal(kept[k], v) for k, v in step.server_state.items()), name


# ------------------------------------------------------------------------------- FedProx

def test_fedprox_term_is_half_mu_squared_distance_and_absent_at_mu_0():
    view = ClientView({"w": torch.tensor([0.0, 0.0]), "v": torch.tensor([1.0])}, {}, {},
                      {"prox_mu": 0.5})
    plan = get_strategy("fedprox").local(view)
    params = {"w": torch.nn.Parameter(torch.tensor([1.0, 2.0])), "v": torch.nn.Parameter(torch.tensor([3.0]))}
    assert float(plan.loss_term(params).detach()) == pytest.approx(0.25 * (1 + 4 + 4))
    zero = get_strategy("fedprox").local(ClientView(view.global_state, {}, {}, {"prox_mu": 0.0}))
    assert zero.loss_term is None and zero.grad_hook is None


def _tiny_lora(tiny_model):
    from cllora.model import attach_lora, get_adapter_state, load_model

    torch.manual_seed(0)
    model = attach_lora(load_model(tiny_model, "cpu", "fp32"), rank=4, alpha=8.0)
    with torch.no_grad():  # B starts at zero; give it a value so every tensor gets gradients
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    return model, get_adapter_state(model)


def _train_from(model, start, hooks_for, steps=6, optimizer="adamw"):
    """Local training from `start` on fixed random batches; hooks_for(named params) → StepHooks."""
    from cllora.model import get_adapter_state, lora_parameters, set_adapter_state

    set_adapter_state(model, start)
    named = lora_parameters(model)
    gen = torch.Generator().manual_seed(1)
    batches = [Batch(torch.randint(3, 400, (4, 24), generator=gen), torch.ones(4, 24, dtype=torch.long),
                     np.arange(4)) for _ in range(steps)]
    torch.manual_seed(2)
    train_local(model, list(named.values()), lambda epoch: batches, 1, optimizer, 1e-2,
                torch.device("cpu"), hooks=hooks_for(named))
    return get_adapter_state(model)


def _distance(a, b):
    return math.sqrt(sum(float((a[k] - b[k]).pow(2).sum()) for k in a))


def test_fedprox_mu_0_equals_fedavg_bit_for_bit_and_mu_pulls_towards_global(tiny_model):
    model, start = _tiny_lora(tiny_model)

    def prox(mu):
        plan = get_strategy("fedprox").local(ClientView(start, {}, {}, {"prox_mu": mu}))
        return lambda named: StepHooks(*plan.bind(named))

    fedavg = _train_from(model, start, lambda named: StepHooks())
    mu0 = _train_from(model, start, prox(0.0))
    assert all(torch.equal(fedavg[k], mu0[k]) for k in fedavg)
    strong = _train_from(model, start, prox(10.0), optimizer="sgd")
    plain_sgd = _train_from(model, start, lambda named: StepHooks(), optimizer="sgd")
    assert _distance(strong, start) < 0.9 * _distance(plain_sgd, start)
    adam_prox = _train_from(model, start, prox(10.0))
    assert _distance(adam_prox, start) < _distance(fedavg, start)


# ------------------------------------------------------------------------------ SCAFFOLD

class LeastSquares(torch.nn.Module):
    """One client's problem ½·mean((X w − y)²), called like a causal LM: the batch's first token
    column holds the row indices."""

    def __init__(self, X: torch.Tensor, y: torch.Tensor):
        super().__init__()
        self.X, self.y = X, y
        self.w = torch.nn.Parameter(torch.zeros(X.shape[1], dtype=X.dtype))

    def forward(self, input_ids, attention_mask, labels):
        rows = input_ids[:, 0]
        return SimpleNamespace(loss=0.5 * (self.X[rows] @ self.w - self.y[rows]).pow(2).mean())


def heterogeneous_clients(n_clients=4, rows=20, dim=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    clients = []
    for i in range(n_clients):
        X = torch.randn(rows, dim, generator=g, dtype=torch.float64) * (0.5 + i * 0.4) + i
        w_star = torch.randn(dim, generator=g, dtype=torch.float64) * 3
        clients.append(LeastSquares(X, X @ w_star + 0.1 * torch.randn(rows, generator=g, dtype=torch.float64)))
    return clients


def global_loss(clients, w) -> float:
    return float(np.mean([0.5 * float((c.X @ w - c.y).pow(2).mean()) for c in clients]))


def federate(name, clients, rounds, sampled, local_steps=10, lr=0.02):
    """The round protocol of cllora.aggregate over least-squares clients (full-batch local SGD)."""
    strategy = get_strategy(name)
    opts = strategy_options(name, {**OPTS, "lr": lr, "clients": len(clients)})
    x = {"w": torch.zeros(clients[0].X.shape[1], dtype=torch.float64)}
    server, own = strategy.init_server(x, opts), {i: {} for i in range(len(clients))}
    for t in range(rounds):
        downlink, replies = strategy.downlink(server), []
        for i in sampled(t):
            view = ClientView(x, downlink, own[i], opts)
            plan, model = strategy.local(view), clients[i]
            model.w.data.copy_(plan.start["w"])
            n = len(model.y)
            batch = Batch(torch.arange(n).repeat(2, 1).T.contiguous(), torch.ones(n, 2, dtype=torch.long),
                          np.arange(n))
            result = train_local(model, [model.w], lambda epoch: [batch], local_steps, "sgd", lr,
                                 torch.device("cpu"), hooks=StepHooks(*plan.bind({"w": model.w})))
            trained = {"w": model.w.detach().clone()}
            extra, own[i] = strategy.finish(view, trained, result.steps)
            replies.append(Reply(trained, n, extra, i))
        step = strategy.aggregate(x, server, replies, opts)
        x, server = step.global_state, step.server_state
    return x, server, own


def test_scaffold_beats_fedavg_on_heterogeneous_least_squares():
    clients = heterogeneous_clients()
    every = lambda t: range(len(clients))  # noqa: E731
    X = torch.cat([c.X for c in clients])
    y = torch.cat([c.y for c in clients])
    optimum = global_loss(clients, torch.linalg.lstsq(X, y.unsqueeze(1)).solution.squeeze(1))
    fedavg, _, _ = federate("fedavg", clients, 40, every)
    scaffold, _, _ = federate("scaffold", clients, 40, every)
    gap_fedavg = global_loss(clients, fedavg["w"]) - optimum
    gap_scaffold = global_loss(clients, scaffold["w"]) - optimum
    assert gap_scaffold < 0.1 * gap_fedavg  # FedAvg stalls at a drifted fixed point
    assert gap_scaffold < 1e-3 * optimum + 1e-6


def test_scaffold_control_variates_stay_the_mean_of_all_clients():
    clients = heterogeneous_clients()
    rng = np.random.default_rng(0)
    picks = [sorted(rng.choice(len(clients), 2, replace=False)) for _ in range(7)]
    _, server, own = federate("scaffold", clients, 7, lambda t: picks[t])
    client_cs = [own[i].get("c/w", torch.zeros(5, dtype=torch.float64)) for i in range(len(clients))]
    assert torch.allclose(server["c/w"], torch.stack(client_cs).mean(0), atol=1e-10)
    assert float(server["c/w"].abs().sum()) > 0


def test_scaffold_option_ii_by_hand():
    strategy = get_strategy("scaffold")
    x = {"w": torch.tensor([1.0, 1.0])}
    view = ClientView(x, {"c/w": torch.tensor([0.5, 0.0])}, {"c/w": torch.tensor([0.25, 1.0])},
                      {"lr": 0.1, "clients": 4})
    trained = {"w": torch.tensor([0.0, 2.0])}
    extra, keep = strategy.finish(view, trained, 5)
    # c_i+ = c_i − c + (x − y)/(K η) = [0.25 − 0.5 + 1/0.5, 1 − 0 − 1/0.5] = [1.75, −1]
    assert keep["c/w"].tolist() == pytest.approx([1.75, -1.0])
    assert extra["dc/w"].tolist() == pytest.approx([1.5, -2.0])
    plan = strategy.local(view)  # the gradient correction is c − c_i
    w = torch.nn.Parameter(torch.zeros(2))
    w.grad = torch.tensor([1.0, 1.0])
    plan.grad_hook({"w": w})
    assert w.grad.tolist() == pytest.approx([1.25, 0.0])
    out = strategy.aggregate(x, {"c/w": torch.tensor([0.5, 0.0])},
                             [Reply(trained, 1, extra), Reply(x, 3, {"dc/w": torch.tensor([0.5, 0.0])})],
                             view.options)
    assert out.global_state["w"].tolist() == pytest.approx([0.75, 1.25])  # example-weighted mean
    assert out.server_state["c/w"].tolist() == pytest.approx([0.5 + 2.0 / 4, -2.0 / 4])


# --------------------------------------------------------------------------------- drift

def test_client_drift_by_hand():
    x = {"a": torch.tensor([0.0, 0.0]), "b": torch.tensor([0.0])}
    ys = [{"a": torch.tensor([3.0, 0.0]), "b": torch.tensor([4.0])},
          {"a": torch.tensor([0.0, 0.0]), "b": torch.tensor([1.0])},
          {"a": torch.tensor([0.0, 0.0]), "b": torch.tensor([-1.0])}]
    d = client_drift(x, ys)
    assert d["drift_mean"] == pytest.approx(7 / 3) and d["drift_max"] == pytest.approx(5.0)
    assert d["drift_pairwise"] == pytest.approx((math.sqrt(18) + math.sqrt(34) + 2) / 3)
    one = client_drift(x, ys[:1])
    assert one["drift_mean"] == 5.0 and math.isnan(one["drift_pairwise"])
    assert all(math.isnan(v) for v in client_drift(x, []).values())


# ---------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("changes, message", [
    (dict(strategy="fedprox", prox_mu=-0.1), "prox_mu must be a number >= 0"),
    (dict(strategy="fedadam", beta1=1.0), r"beta1 must be in \[0, 1\)"),
    (dict(strategy="fedyogi", beta2=-0.5), "beta2 must be a number >= 0"),
    (dict(strategy="fedavgm", server_momentum=1.5), r"server_momentum must be in \[0, 1\)"),
    (dict(strategy="fedadagrad", tau=0.0), "tau must be a number > 0"),
    (dict(strategy="fedadam", server_lr=0.0), "server_lr must be a number > 0"),
    (dict(strategy="fedavg", prox_mu=0.1), "prox_mu = 0.1 is only used by strategy fedprox, not by 'fedavg'"),
    (dict(strategy="fedadagrad", beta2=0.9), "beta2 = 0.9 is only used by strategy fedadam/fedyogi"),
    (dict(strategy="scaffold", server_lr=0.1), "server_lr = 0.1 is only used by strategy fedavgm"),
    (dict(strategy="fedmagic"), "strategy must be one of fedavg, fedprox, scaffold"),
])
def test_bad_strategy_options_are_one_sentence_user_errors(changes, message):
    with pytest.raises(UserError, match=message):
        RunConfig(**changes)


def test_registry_imports_without_torch():
    import subprocess
    import sys

    code = ("import sys, cllora.aggregate, cllora.config.settings; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_run_state_packs_into_one_flat_dict_and_back():
    from cllora.aggregate.checkpoint_state import pack_state, unpack_state

    g = {"layer.lora_A.default.weight": torch.ones(2)}
    server = {"m/layer.lora_A.default.weight": torch.zeros(2)}
    own = {3: {"c/layer.lora_A.default.weight": torch.full((2,), 3.0)}, 11: {"c/x": torch.ones(1)}}
    flat = pack_state(g, server, own)
    assert set(flat) == {"layer.lora_A.default.weight", "server::m/layer.lora_A.default.weight",
                         "client::3::c/layer.lora_A.default.weight", "client::11::c/x"}
    back = unpack_state(flat)
    assert back[0].keys() == g.keys() and back[1].keys() == server.keys()
    assert sorted(back[2]) == [3, 11] and torch.equal(back[2][3]["c/layer.lora_A.default.weight"],
                                                      own[3]["c/layer.lora_A.default.weight"])
    assert unpack_state(g) == (g, {}, {})  # a FedAvg checkpoint is just the adapter


def test_scaffold_uplink_reference_matches_what_a_client_sends():
    from cllora.aggregate import check_update

    strategy = get_strategy("scaffold")
    x = {"w": torch.zeros(2)}
    view = ClientView(x, strategy.downlink(strategy.init_server(x, OPTS)), {}, OPTS)
    extra, _ = strategy.finish(view, {"w": torch.ones(2)}, 3)
    assert check_update(extra, strategy.uplink(x)) is None
    assert get_strategy("fedavg").uplink(x) == {}


# ----------------------------------------------------------------- in the round loop (tiny model)

def engine_config(model: str, strategy: str, **changes):
    from test_engine import tiny_config

    return tiny_config(model, strategy=strategy, clients=4, max_train_examples=120, max_test_examples=12,
                       **changes)


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_every_strategy_resumes_to_identical_rounds(tiny_model, tmp_path, strategy):
    from test_engine import metric_columns

    from cllora import records
    from cllora.engine.loop import run_experiment

    cfg = engine_config(tiny_model, strategy, rounds=3)
    run_experiment(cfg, tmp_path / "straight")
    run_experiment(cfg.replace(rounds=2), tmp_path / "resumed")
    run_experiment(cfg, tmp_path / "resumed", resume=True)
    straight = metric_columns(tmp_path / "straight" / "rounds.csv")
    assert straight == metric_columns(tmp_path / "resumed" / "rounds.csv")
    assert straight[-1]["global_test_loss"] != straight[0]["global_test_loss"]
    for row in straight[1:]:  # drift is recorded every round (two clients: one pair)
        assert row["drift_max"] >= row["drift_mean"] > 0 and row["drift_pairwise"] > 0
    assert straight[0]["drift_mean"] is None
    saved = records.load_checkpoint(tmp_path / "straight")[1]
    assert any(k.startswith("server::") for k in saved) == \
        (strategy not in ("fedavg", "fedprox", "ffa-lora", "fedsa-lora"))


def test_fedprox_mu_0_run_equals_fedavg_run_bit_for_bit(tiny_model, tmp_path):
    from test_engine import metric_columns

    from cllora import records
    from cllora.engine.loop import run_experiment

    run_experiment(engine_config(tiny_model, "fedavg", rounds=2), tmp_path / "fedavg")
    run_experiment(engine_config(tiny_model, "fedprox", rounds=2, prox_mu=0.0), tmp_path / "mu0")
    assert metric_columns(tmp_path / "fedavg" / "rounds.csv") == metric_columns(tmp_path / "mu0" / "rounds.csv")
    a, b = records.load_checkpoint(tmp_path / "fedavg")[1], records.load_checkpoint(tmp_path / "mu0")[1]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_scaffold_doubles_the_bytes_and_keeps_every_clients_control_variate(tiny_model, tmp_path):
    from cllora import records
    from cllora.aggregate.checkpoint_state import unpack_state
    from cllora.engine.loop import run_experiment

    summary = run_experiment(engine_config(tiny_model, "scaffold", rounds=3), tmp_path / "s")
    rounds = records.read_csv(tmp_path / "s" / "rounds.csv")
    adapter = summary["adapter_bytes"]
    for row in rounds[1:]:  # 2 clients a round, each way: adapter + one control variate
        assert row["bytes_down"] == row["bytes_up"] == 2 * 2 * adapter
    assert rounds[-1]["bytes_cumulative"] == 3 * 8 * adapter
    _, server, own = unpack_state(records.load_checkpoint(tmp_path / "s")[1])
    participated = {c["client_id"] for c in records.read_csv(tmp_path / "s" / "clients.csv")
                    if c["participated"] and c["round"] > 0}
    assert set(own) == participated
    for key, c in server.items():  # c = (1/N) Σ_i c_i over all N = 4 clients (absent ones: 0)
        total = sum(own[i][key] for i in own)
        assert torch.allclose(c, total / 4, atol=1e-6), key


# ------------------------------------------------------------------------------ report panel

def _record(strategy, seed, losses, scheme="length", drift=(1.0, 2.0), complete=True, **options):
    from pathlib import Path

    from cllora.analysis.runs import RunRecord

    cfg = {**RunConfig().to_dict(), "model": "m", "scheme": scheme, "alpha": 0.1, "seed": seed,
           "strategy": strategy, "rounds": 1, **options}
    rounds = [{"round": i, "global_test_loss": v, "fairness_var": 0.01 * (i + 1),
               "drift_mean": None if i == 0 else drift[0], "drift_pairwise": None if i == 0 else drift[1],
               "bytes_cumulative": 100 * i} for i, v in enumerate(losses)]
    return RunRecord(f"{strategy}-{seed}", Path("."), cfg, {}, rounds, [], None,
                     {"rounds_completed": 1 if complete else 0})


def test_report_compares_strategies_per_condition_with_seed_intervals():
    from cllora.report.html import _strategies_html
    from cllora.analysis.stats import t_half_width
    from cllora.analysis.strategies import strategy_rows

    runs = [_record("fedavg", 0, [3.0, 2.5, 2.4]), _record("fedavg", 1, [3.0, 2.6, 2.2]),
            _record("fedprox", 0, [3.0, 2.4, 2.1], drift=(0.5, 0.8), prox_mu=0.1, complete=False),
            _record("fedavg", 0, [3.0, 2.0], scheme="iid")]  # one strategy only: no comparison
    rows = strategy_rows(runs)
    assert [(r["scheme"], r["strategy"], r["seeds"]) for r in rows] == [
        ("length", "fedprox (prox_mu=0.1)", 1), ("length", "fedavg", 2)]  # sorted by final loss
    prox, avg = rows
    assert avg["final_loss"] == pytest.approx(2.3)
    assert avg["final_loss_hw"] == pytest.approx(t_half_width(np.array([2.4, 2.2])))
    assert avg["best"] == pytest.approx(2.3) and prox["best"] == pytest.approx(2.1)
    assert prox["drift"] == 0.5 and prox["pairwise"] == 0.8 and avg["bytes"] == 200
    assert avg["fairness"] == pytest.approx(0.03)
    page = _strategies_html(rows)
    assert "fedprox (prox_mu=0.1) (incomplete)" in page  # its summary.json says it stopped early
    assert "length skew, α = 0.1" in page and "2.3000 ± " in page
    assert _strategies_html([]) == ""


def test_report_draws_each_strategys_mean_curves_per_condition():
    from cllora.report.figures import strategy_figure
    from cllora.analysis.strategies import strategy_curves

    runs = [_record("fedprox", 0, [3.0, 2.4, 2.1], prox_mu=0.1), _record("fedavg", 0, [3.0, 2.5, 2.4]),
            _record("fedavg", 1, [3.0, 2.6, 2.2]), _record("fedavg", 0, [3.0, 2.7], scheme="iid"),
            _record("scaffold", 0, [3.0, 2.9], scheme="iid", drift=(4.0, 5.0))]
    (entry,) = strategy_curves(runs)
    assert [c["condition"] for c in entry["conditions"]] == ["α = 0.1", "IID"]  # skewed first
    length, iid = entry["conditions"]
    assert list(length["curves"]) == ["fedavg", "fedprox (prox_mu=0.1)"]  # the registry's order
    assert length["curves"]["fedavg"]["global_test_loss"] == [(0, 3.0), (1, 2.55), (2, 2.3)]  # mean of seeds
    assert iid["curves"]["scaffold"]["drift_mean"] == [(1, 4.0)]
    fig = strategy_figure(entry["conditions"], "t")
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 6  # 2 conditions × (loss, aggregation error, drift)
    assert [len(ax.lines) for ax in axes[:3]] == [2, 2, 2]
    assert list(axes[0].lines[0].get_ydata()) == [3.0, 2.55, 2.3]


def test_each_strategy_is_compared_with_fedavg_paired_by_seed():
    from cllora.report.html import _strategies_html
    from cllora.analysis.stats import t_interval
    from cllora.analysis.strategies import strategy_rows

    avg = [3.0, 3.2, 3.1]
    adam = [2.9, 3.09, 2.98]  # lower than FedAvg in every seed, by 0.1, 0.11, 0.12
    runs = [_record("fedavg", s, [3.5, v]) for s, v in enumerate(avg)] + \
           [_record("fedadam", s, [3.5, v]) for s, v in enumerate(adam)]
    rows = {r["strategy"]: r for r in strategy_rows(runs)}
    assert rows["fedavg"]["vs_baseline"] is None
    est = rows["fedadam"]["vs_baseline"]
    effect, low, high = t_interval([-0.1, -0.11, -0.12])
    assert est["effect"] == pytest.approx(effect) and est["low"] == pytest.approx(low)
    assert est["high"] == pytest.approx(high) and est["verdict"] == "contradicted"  # lower: better
    assert "lower (t, seeds)" in _strategies_html(list(rows.values()))
    # a run that stopped early is shown, marked, but kept out of the verdict: 2 seeds left
    runs[-1] = _record("fedadam", 2, [3.5, 2.0], complete=False)
    rows = {r["strategy"]: r for r in strategy_rows(runs)}
    assert not rows["fedadam"]["complete"] and rows["fedadam"]["vs_baseline"]["seeds"] == 2
    assert rows["fedadam"]["vs_baseline"]["verdict"] == "inconclusive"


def test_holm_keeps_the_strategy_table_from_over_claiming():
    from cllora.analysis.strategies import strategy_rows

    # FedAdam clearly better (p tiny), FedYogi and FedAdagrad barely (p = 0.035 each): after Holm
    # over the three comparisons, theirs no longer stand (adjusted 0.07); FedAdam's does
    avg = [3.0, 3.2, 3.1]
    runs = [_record("fedavg", s, [3.5, v]) for s, v in enumerate(avg)]
    runs += [_record("fedadam", s, [3.5, v - d]) for s, (v, d) in enumerate(zip(avg, (0.1, 0.1001, 0.1002)))]
    for name in ("fedyogi", "fedadagrad"):
        runs += [_record(name, s, [3.5, v - d]) for s, (v, d) in enumerate(zip(avg, (0.02, 0.03, 0.04)))]
    rows = {r["strategy"]: r for r in strategy_rows(runs)}
    adam, yogi = rows["fedadam"]["vs_baseline"], rows["fedyogi"]["vs_baseline"]
    assert 0.025 < yogi["p_value"] < 0.05 and yogi["p_holm"] == pytest.approx(2 * yogi["p_value"])
    assert yogi["verdict"] == "inconclusive" and "Holm" in yogi["method"]
    assert adam["verdict"] == "contradicted" and adam["p_holm"] < 0.05
