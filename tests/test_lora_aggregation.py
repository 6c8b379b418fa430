"""LoRA-aware aggregation: the aggregation error (rank space vs dense vs hand-computed), FFA-LoRA,
FLoRA, FedEx-LoRA, FedSA-LoRA and bytes, on random tensors and on real peft layers."""

from __future__ import annotations

import math

import pytest
import torch

from cllora.aggregate.error import aggregation_error, layer_errors
from cllora.aggregate.fedex_lora import fedex_lora
from cllora.aggregate.fedsa_lora import fedsa_client_state, fedsa_lora
from cllora.aggregate.ffa_lora import ffa_lora
from cllora.aggregate.flora import flora
from cllora.aggregate.lora_math import (
    add_deltas,
    base_weight_name,
    layer_factors,
    merged_base,
    own_factors,
)

A_KEY, B_KEY = "m.layers.{}.q_proj.lora_A.default.weight", "m.layers.{}.q_proj.lora_B.default.weight"


def make_state(gen: torch.Generator, layers=((6, 5, 3), (4, 7, 3))) -> dict:
    """A random adapter: per layer (d, k, r), A r×k and B d×r (B nonzero, as after training)."""
    state = {}
    for i, (d, k, r) in enumerate(layers):
        state[A_KEY.format(i)] = torch.randn(r, k, generator=gen)
        state[B_KEY.format(i)] = torch.randn(d, r, generator=gen)
    return state


def scalar_state(a: float, b: float) -> dict:
    return {A_KEY.format(0): torch.tensor([[a]]), B_KEY.format(0): torch.tensor([[b]])}


def dense_mean(states, weights, scaling, layer):
    """Σ p_k s B_k A_k by an explicit loop over clients (the definition, not the stacked product)."""
    total = float(sum(weights))
    return sum((w / total) * scaling * (s[B_KEY.format(layer)].double() @ s[A_KEY.format(layer)].double())
               for s, w in zip(states, weights))


# ---------------------------------------------------------------- the aggregation error

def test_error_by_hand_on_scalars():
    # p = (1/2, 1/2), B = (1, 3), A = (2, 4): M = (2 + 12)/2 = 7, B̄Ā = 2·3 = 6, E = 1
    err = aggregation_error([scalar_state(2, 1), scalar_state(4, 3)], [5, 5])
    assert err["agg_error"] == pytest.approx(1 / 7)
    assert err["agg_error_max_layer"] == pytest.approx(1 / 7)
    # weights 3:1: M = (3·2 + 12)/4 = 4.5; B̄ = 1.5, Ā = 2.5 → E = 4.5 − 3.75 = 0.75
    assert aggregation_error([scalar_state(2, 1), scalar_state(4, 3)], [3, 1])["agg_error"] == \
        pytest.approx(0.75 / 4.5)


def test_rank_space_equals_dense():
    gen = torch.Generator().manual_seed(0)
    states = [make_state(gen) for _ in range(4)]
    weights = [10, 3, 7, 1]
    fast, dense = layer_errors(states, weights), layer_errors(states, weights, dense=True)
    for layer in dense:
        assert fast[layer].error_sq == pytest.approx(dense[layer].error_sq, rel=1e-10)
        assert fast[layer].mean_sq == pytest.approx(dense[layer].mean_sq, rel=1e-10)
    total = aggregation_error(states, weights)
    expected = math.sqrt(sum(e.error_sq for e in dense.values()) / sum(e.mean_sq for e in dense.values()))
    assert total["agg_error"] == pytest.approx(expected, rel=1e-10)
    assert total["agg_error_max_layer"] == pytest.approx(max(e.relative for e in dense.values()), rel=1e-10)
    assert 0 < total["agg_error"] <= total["agg_error_max_layer"]


def test_rank_space_equals_dense_relative_to_the_round_start():
    gen = torch.Generator().manual_seed(3)
    states, start = [make_state(gen) for _ in range(3)], make_state(gen)
    fast, dense = layer_errors(states, [2, 5, 1], start), layer_errors(states, [2, 5, 1], start, dense=True)
    for layer in dense:
        assert fast[layer].mean_sq == pytest.approx(dense[layer].mean_sq, rel=1e-10)
        assert fast[layer].error_sq == pytest.approx(dense[layer].error_sq, rel=1e-10)
    # on scalars: start B A = 2·1 = 2, clients (1,2) and (3,4): M = 7, U = 5, E = 1
    err = aggregation_error([scalar_state(2, 1), scalar_state(4, 3)], [1, 1], scalar_state(1, 2))
    assert err["agg_error"] == pytest.approx(1 / 5)


def test_constant_client_deviations_give_a_constant_error():
    # rank 2: the global adapter grows round after round in component 0, the clients deviate from
    # it by the same moves every round in component 1. This round's update and its error are then
    # the same every round, so the relative error must be constant (dividing by the cumulative
    # product ‖Σ p_k B_k A_k‖ instead would make it fall by construction)
    gen = torch.Generator().manual_seed(4)
    d, k = 6, 5
    moves = [(torch.randn(d, generator=gen), torch.randn(k, generator=gen)) for _ in range(3)]
    b0, a0 = torch.randn(d, generator=gen), torch.randn(k, generator=gen)
    errors, cumulative = [], []
    for t in range(1, 6):
        glob = {A_KEY.format(0): torch.stack([t * a0, torch.zeros(k)]),
                B_KEY.format(0): torch.stack([t * b0, torch.zeros(d)], dim=1)}
        clients = [{A_KEY.format(0): torch.stack([t * a0, am]), B_KEY.format(0): torch.stack([t * b0, bm], dim=1)}
                   for bm, am in moves]
        errors.append(aggregation_error(clients, [3, 1, 2], glob)["agg_error"])
        cumulative.append(aggregation_error(clients, [3, 1, 2])["agg_error"])
    assert errors[0] > 0.01
    assert errors == pytest.approx([errors[0]] * 5, rel=1e-9)
    assert cumulative[-1] < 0.5 * cumulative[0]  # the old scale falls although nothing changed


def test_error_is_zero_for_one_identical_or_ffa_clients():
    gen = torch.Generator().manual_seed(1)
    one = make_state(gen)
    assert aggregation_error([one], [4]) == {"agg_error": 0.0, "agg_error_max_layer": 0.0}
    assert aggregation_error([one, one, one], [1, 2, 3])["agg_error"] == pytest.approx(0.0, abs=1e-12)
    ffa = [{k: (v if "lora_A" in k else torch.randn(v.shape, generator=gen)) for k, v in one.items()}
           for _ in range(3)]
    err = aggregation_error(ffa, [1, 2, 3])
    assert err["agg_error"] == 0.0 and err["agg_error_max_layer"] == 0.0


def test_zero_update_is_not_an_error():
    zero_b = {k: (torch.zeros_like(v) if "lora_B" in k else v) for k, v in make_state(torch.Generator()).items()}
    assert aggregation_error([zero_b, zero_b], [1, 1]) == {"agg_error": 0.0, "agg_error_max_layer": 0.0}


def test_unpaired_layers_and_bad_weights_are_refused():
    state = scalar_state(1, 1)
    with pytest.raises(ValueError, match="unpaired"):
        layer_factors({A_KEY.format(0): state[A_KEY.format(0)]})
    with pytest.raises(ValueError, match="positive sum"):
        aggregation_error([state], [0])


# ---------------------------------------------------------------- the four methods

def test_flora_and_fedex_by_hand_on_scalars():
    # clients (a, b) = (1, 2) and (3, 4), weights 1 and 3, scaling 2: the exact mean update is
    # 2·(¼·2·1 + ¾·4·3) = 19; FedAvg gives ā = (1 + 9)/4 = 2.5, b̄ = (2 + 12)/4 = 3.5, so
    # 2·ā·b̄ = 17.5 and FedEx-LoRA's residual is 19 − 17.5 = 1.5
    states, weights = [scalar_state(1.0, 2.0), scalar_state(3.0, 4.0)], [1, 3]
    fresh = scalar_state(0.5, 0.0)
    new_global, deltas = flora(states, weights, 2.0, fresh)
    assert [v.item() for v in new_global.values()] == [0.5, 0.0]
    assert [v.item() for v in deltas.values()] == pytest.approx([19.0])
    averaged, residual = fedex_lora(states, weights, 2.0)
    assert (averaged[A_KEY.format(0)].item(), averaged[B_KEY.format(0)].item()) == pytest.approx((2.5, 3.5))
    assert [v.item() for v in residual.values()] == pytest.approx([1.5])


def test_flora_and_fedex_deltas_carry_the_exact_mean_update():
    gen = torch.Generator().manual_seed(2)
    states, weights, scaling = [make_state(gen) for _ in range(3)], [5, 1, 2], 2.5
    fresh = {k: torch.zeros_like(v) for k, v in states[0].items()}
    new_global, deltas = flora(states, weights, scaling, fresh)
    assert all(torch.equal(new_global[k], fresh[k]) for k in fresh)
    averaged, residual = fedex_lora(states, weights, scaling)
    # FedEx-LoRA's factors are the weighted means of every A and B, computed here by a plain loop
    for key in states[0]:
        assert torch.allclose(averaged[key], sum(w * s[key] for w, s in zip(weights, states)) / 8, atol=1e-6)
    for i, layer in enumerate(layer_factors(states[0])):
        expected = dense_mean(states, weights, scaling, i)
        assert torch.allclose(deltas[layer].double(), expected, atol=1e-5)
        # the residual is the exact mean minus the product of those hand-averaged factors
        hand = sum(w * s[B_KEY.format(i)].double() for w, s in zip(weights, states)) / 8 \
            @ sum(w * s[A_KEY.format(i)].double() for w, s in zip(weights, states)) / 8
        assert torch.allclose(residual[layer].double(), expected - scaling * hand, atol=1e-5)
        assert residual[layer].abs().max() > 1e-3  # FedAvg alone would be wrong here


def test_add_deltas_sums_rounds():
    d1, d2 = {"l": torch.ones(2, 2)}, {"l": torch.full((2, 2), 2.0)}
    total = add_deltas(add_deltas(None, d1), d2)
    assert torch.equal(total["l"], torch.full((2, 2), 3.0)) and torch.equal(d1["l"], torch.ones(2, 2))


def test_merged_base_is_original_plus_total_in_the_original_dtype():
    originals = {"w": torch.tensor([[1.0, 2.0]], dtype=torch.bfloat16)}
    total = {"w": torch.tensor([[0.5, 0.001]])}
    merged = merged_base(originals, total)
    assert merged["w"].dtype == torch.bfloat16
    assert merged["w"].float().tolist() == [[1.5, 2.0]]  # 2.001 rounds to 2 in bf16 (8-bit mantissa)
    assert torch.equal(originals["w"], torch.tensor([[1.0, 2.0]], dtype=torch.bfloat16))


def test_ffa_lora_keeps_a_and_averages_b():
    gen = torch.Generator().manual_seed(3)
    base = make_state(gen)
    states = [{k: (v.clone() if "lora_A" in k else torch.randn(v.shape, generator=gen)) for k, v in base.items()}
              for _ in range(2)]
    states[1][A_KEY.format(0)] += 1.0  # even a client that moved A cannot move the global A
    out = ffa_lora(states, [1, 3], frozen=base)
    assert torch.equal(out[A_KEY.format(0)], base[A_KEY.format(0)])
    assert torch.equal(out[A_KEY.format(1)], base[A_KEY.format(1)])
    assert torch.allclose(out[B_KEY.format(1)], 0.25 * states[0][B_KEY.format(1)] + 0.75 * states[1][B_KEY.format(1)])


def test_fedsa_shares_a_and_keeps_each_clients_b():
    gen = torch.Generator().manual_seed(4)
    states = [make_state(gen) for _ in range(2)]
    server = fedsa_lora(states, [1, 1])
    assert torch.allclose(server[A_KEY.format(0)], (states[0][A_KEY.format(0)] + states[1][A_KEY.format(0)]) / 2)
    own = own_factors(states[1], "B")
    assert set(own) == {B_KEY.format(0), B_KEY.format(1)}
    start = fedsa_client_state(server, own)
    assert torch.equal(start[B_KEY.format(0)], states[1][B_KEY.format(0)])
    assert torch.equal(start[A_KEY.format(0)], server[A_KEY.format(0)])
    first = fedsa_client_state(server, {})  # before its first round: B at its (zero) initialisation
    assert torch.equal(first[B_KEY.format(1)], torch.zeros(4, 3))
    assert torch.equal(first[A_KEY.format(1)], server[A_KEY.format(1)])


def test_bytes_per_method():
    from cllora.commands.params import strategy_round_bytes

    # two square layers d = k = 64, r = 4: A and B hold 256 parameters each → 4 × 256 × 4 = 4096 B
    state = {}
    for i in range(2):
        state[A_KEY.format(i)], state[B_KEY.format(i)] = torch.zeros(4, 64), torch.zeros(64, 4)

    def per_round(name, clients=2):
        return strategy_round_bytes(name, state, 4, 16.0, clients)

    assert per_round("fedavg") == (4096, 4096)
    assert per_round("ffa-lora") == (2048, 2048)  # half of FedAvg at the same rank
    assert per_round("fedsa-lora") == (2048, 2048)
    assert per_round("fedex-lora") == (4096, 4096 + 2 * 64 * 64 * 4)  # + a d×k residual per layer
    assert per_round("flora", clients=3) == (4096, 4096 + 3 * 4096)  # fresh adapter + 3 stacked


# ---------------------------------------------------------------- on the tiny model's real peft layers

def _peft_layers(model):
    from peft.tuners.lora import Linear

    return {n: m for n, m in model.named_modules() if isinstance(m, Linear)}


@pytest.mark.parametrize("method", ["flora", "fedex-lora"])
def test_merged_base_plus_adapter_is_the_exact_mean_on_peft_layers(tiny_model, method):
    from cllora.model import attach_lora, get_adapter_state, load_model, set_adapter_state

    torch.manual_seed(0)
    model = attach_lora(load_model(tiny_model), rank=4, alpha=16.0)
    fresh = get_adapter_state(model)
    gen = torch.Generator().manual_seed(6)
    states = [{k: v + 0.1 * torch.randn(v.shape, generator=gen) for k, v in fresh.items()} for _ in range(3)]
    weights, layers = [2, 5, 3], _peft_layers(model)
    scaling = next(iter(layers.values())).scaling["default"]
    assert scaling == 4.0  # α / r = 16 / 4
    originals = {n: m.base_layer.weight.detach().clone() for n, m in layers.items()}
    if method == "flora":
        new_state, deltas = flora(states, weights, scaling, fresh)
    else:
        new_state, deltas = fedex_lora(states, weights, scaling)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for layer, delta in deltas.items():
            params[base_weight_name(layer)] += delta
    set_adapter_state(model, new_state)
    x = torch.randn(3, 64, generator=gen)
    for name, module in layers.items():
        a = [s[f"{name}.lora_A.default.weight"].double() for s in states]
        b = [s[f"{name}.lora_B.default.weight"].double() for s in states]
        update = sum(w / 10 * scaling * (bk @ ak) for w, ak, bk in zip(weights, a, b))
        expected = x.double() @ (originals[name].double() + update).T + module.base_layer.bias.double()
        with torch.no_grad():
            assert torch.allclose(module(x).double(), expected, atol=1e-4)


# ---------------------------------------------------------------- the Strategy records

def _replies(states, weights):
    from cllora.aggregate.base import Reply

    return [Reply(s, w, client_id=i) for i, (s, w) in enumerate(zip(states, weights))]


def test_strategy_records_flora_fedex_fedsa_ffa():
    from cllora.aggregate.base import ClientView
    from cllora.aggregate.fedex_lora import FEDEX_LORA
    from cllora.aggregate.fedsa_lora import FEDSA_LORA
    from cllora.aggregate.ffa_lora import FFA_LORA
    from cllora.aggregate.flora import FLORA

    gen = torch.Generator().manual_seed(7)
    initial = make_state(gen)
    states, weights = [make_state(gen) for _ in range(2)], [1, 3]
    options = {"lora_alpha": 6.0, "rank": 3, "lr": 1e-3, "clients": 5}  # s = 2
    server = FLORA.init_server(initial, options)
    out = FLORA.aggregate(initial, server, _replies(states, weights), options)
    assert all(torch.equal(out.global_state[k], initial[k]) for k in initial)  # fresh adapter
    expected = dense_mean(states, weights, 2.0, 0)
    assert torch.allclose(out.base_delta["m.layers.0.q_proj.base_layer.weight"].double(), expected, atol=1e-5)
    down = FLORA.downlink(out.server_state)  # stacked factors, B scaled by p_k s: replays the merge
    replay = sum(down[f"stack/{i}/{B_KEY.format(0)}"].double() @ down[f"stack/{i}/{A_KEY.format(0)}"].double()
                 for i in range(2))
    assert torch.allclose(replay, expected, atol=1e-5) and len(down) == 2 * len(initial)
    fedex = FEDEX_LORA.aggregate(initial, {}, _replies(states, weights), options)
    assert set(FEDEX_LORA.downlink(fedex.server_state)) == {"residual/m.layers.0.q_proj", "residual/m.layers.1.q_proj"}
    ffa = FFA_LORA.local(ClientView(initial, {}, {}, options))
    assert ffa.trains(B_KEY.format(0)) and not ffa.trains(A_KEY.format(0))
    assert FFA_LORA.shares(B_KEY.format(0)) and not FFA_LORA.shares(A_KEY.format(0))
    extra, keep = FEDSA_LORA.finish(ClientView(initial, {}, {}, options), states[0], 3)
    assert extra == {} and set(keep) == {B_KEY.format(0), B_KEY.format(1)}
    start = FEDSA_LORA.local(ClientView(initial, {}, keep, options)).start
    assert torch.equal(start[B_KEY.format(1)], states[0][B_KEY.format(1)])
    assert torch.equal(start[A_KEY.format(1)], initial[A_KEY.format(1)])


# ---------------------------------------------------------------- the cost table per strategy

def test_params_round_bytes_from_shapes_only():
    from cllora.commands.params import meta_adapter, strategy_round_bytes

    adapter = meta_adapter("facebook/opt-125m", 2, 16.0, ("q_proj", "v_proj"))
    assert all(t.device.type == "meta" for t in adapter.values())
    # the study's Table 1: 73,728 trainable parameters at r = 2 on q/v → 294,912 B in fp32
    assert strategy_round_bytes("fedavg", adapter, 2, 16.0, 2) == (294_912, 294_912)
    assert strategy_round_bytes("ffa-lora", adapter, 2, 16.0, 2) == (147_456, 147_456)  # B only: half
    assert strategy_round_bytes("fedsa-lora", adapter, 2, 16.0, 2) == (147_456, 147_456)  # A only
    assert strategy_round_bytes("flora", adapter, 2, 16.0, 3) == (294_912, 4 * 294_912)  # + 3 stacked
    residual = 12 * 2 * 768 * 768 * 4  # a 768 × 768 fp32 matrix for q and v of each of 12 layers
    assert strategy_round_bytes("fedex-lora", adapter, 2, 16.0, 2) == (294_912, 294_912 + residual)


# ---------------------------------------------------------------- in the round loop (tiny model)

def _config(tiny_model, strategy, **changes):
    from test_engine import tiny_config

    return tiny_config(tiny_model, strategy=strategy, clients=4, max_train_examples=120,
                       max_test_examples=12, eval_local_models=1, **changes)


@pytest.fixture(scope="module")
def round_one_runs(tiny_model, tmp_path_factory):
    """One round of each method from the same start (same clients, same local training)."""
    from cllora import records
    from cllora.engine.loop import run_experiment

    root = tmp_path_factory.mktemp("lora-methods")
    out = {}
    for strategy in ("fedavg", "ffa-lora", "flora", "fedex-lora", "fedsa-lora"):
        summary = run_experiment(_config(tiny_model, strategy, rounds=2), root / strategy)
        out[strategy] = (records.read_csv(root / strategy / "rounds.csv"),
                         records.read_csv(root / strategy / "clients.csv"),
                         records.load_checkpoint(root / strategy)[1], summary)
    return out


def test_aggregation_error_is_a_column_of_every_round(round_one_runs):
    rounds = round_one_runs["fedavg"][0]
    assert rounds[0]["agg_error"] is None and rounds[0]["agg_error_max_layer"] is None
    for row in rounds[1:]:
        assert 0 < row["agg_error"] <= row["agg_error_max_layer"]
    for row in round_one_runs["ffa-lora"][0][1:]:  # every client keeps the same A: exact
        assert row["agg_error"] == 0.0 and row["agg_error_max_layer"] == 0.0


def test_fedex_adds_the_residual_fedavg_drops(round_one_runs):
    # round 1 starts FedAvg and FedEx-LoRA from the same adapter on the same base, so their clients
    # train the same local models; FedEx-LoRA (B̄Ā plus the merged residual) is then another model
    # than FedAvg (B̄Ā only). Its exactness is checked on tensors above.
    loss = {name: runs[0][1]["global_test_loss"] for name, runs in round_one_runs.items()}
    assert abs(loss["fedavg"] - loss["fedex-lora"]) > 1e-4
    local = {name: runs[0][1]["local_models_global_test_loss_mean"] for name, runs in round_one_runs.items()}
    assert local["fedavg"] == local["fedex-lora"]  # scored before the merge


def test_flora_merges_a_lone_clients_update_exactly(tiny_model, tmp_path):
    """With one client a round, FLoRA's merged update is that client's s·B·A: the global model after
    the round is the client's local model, through the engine's merge into the base weights."""
    from cllora import records
    from cllora.engine.loop import run_experiment

    run_experiment(_config(tiny_model, "flora", rounds=2, clients_per_round=1), tmp_path / "run")
    for row in records.read_csv(tmp_path / "run" / "rounds.csv")[1:]:
        assert row["global_test_loss"] == pytest.approx(row["local_models_global_test_loss_mean"], abs=2e-5)


def test_flora_clients_start_each_round_from_a_fresh_a_of_their_own():
    """As in the authors' code (a new get_peft_model per client per round): A drawn as peft draws
    it, B zero, a different A for each (client, round) seed, the same A for the same seed."""
    from cllora.aggregate.base import ClientView
    from cllora.aggregate.flora import FLORA
    from cllora.aggregate.lora_math import fresh_adapter

    gen = torch.Generator().manual_seed(3)
    initial = make_state(gen)
    options = {"lora_alpha": 6.0, "rank": 3}
    one, other = (FLORA.local(ClientView(initial, {}, {}, options, seed)).start for seed in (11, 12))
    again = FLORA.local(ClientView(initial, {}, {}, options, 11)).start
    assert all(torch.equal(one[k], again[k]) for k in initial)
    a, b = A_KEY.format(0), B_KEY.format(0)
    assert not torch.equal(one[a], other[a]) and not torch.equal(one[a], initial[a])
    assert torch.count_nonzero(one[b]) == 0 and one[a].shape == initial[a].shape
    big = fresh_adapter({a: torch.zeros(64, 400)}, 5)[a]  # peft: kaiming_uniform_(a=√5) = U(±1/√fan_in)
    assert big.abs().max() <= 1 / math.sqrt(400) and big.abs().max() > 0.99 / math.sqrt(400)
    assert big.std().item() == pytest.approx(1 / math.sqrt(400) / math.sqrt(3), rel=0.02)
    assert FLORA.local(ClientView(initial, {}, {}, options)).start is initial  # no seed: the global one


def test_ffa_lora_never_changes_a_and_sends_half_the_bytes(round_one_runs, tiny_model):
    fedavg_rounds, _, fedavg_ckpt, _ = round_one_runs["fedavg"]
    ffa_rounds, _, ffa_ckpt, _ = round_one_runs["ffa-lora"]
    a_keys = [k for k in ffa_ckpt if "lora_A" in k]
    assert a_keys and all(not torch.equal(fedavg_ckpt[k], ffa_ckpt[k]) for k in a_keys)  # FedAvg moved A
    initial = _initial_adapter(tiny_model)
    assert all(torch.equal(ffa_ckpt[k], initial[k]) for k in a_keys)
    for ffa, fedavg in zip(ffa_rounds[1:], fedavg_rounds[1:]):  # square q/v (d = k = 64): exactly half
        assert 2 * ffa["bytes_up"] == fedavg["bytes_up"] and 2 * ffa["bytes_down"] == fedavg["bytes_down"]


def _initial_adapter(tiny_model):
    from cllora.model import attach_lora, get_adapter_state, load_model
    from cllora.seeds import torch_seed

    torch.manual_seed(torch_seed(3, "lora_init"))
    return get_adapter_state(attach_lora(load_model(tiny_model), rank=4, alpha=16.0))


def test_flora_and_fedex_bytes_and_checkpointed_merges(round_one_runs):
    from cllora.aggregate.checkpoint_state import split_base

    adapter = round_one_runs["fedavg"][3]["adapter_bytes"]
    residual = 2 * 2 * 64 * 64 * 4  # q and v of 2 layers, d × k fp32
    flora_rounds, fedex_rounds = round_one_runs["flora"][0], round_one_runs["fedex-lora"][0]
    assert flora_rounds[1]["bytes_down"] == 2 * adapter  # round 1: the fresh adapter, nothing stacked yet
    assert flora_rounds[2]["bytes_down"] == 2 * (adapter + 2 * adapter)  # + both clients' stacked factors
    assert fedex_rounds[1]["bytes_down"] == 2 * adapter
    assert fedex_rounds[2]["bytes_down"] == 2 * (adapter + residual)
    for name in ("flora", "fedex-lora"):
        _, base = split_base(round_one_runs[name][2])
        assert len(base) == 4 and all(k.endswith(".base_layer.weight") for k in base)
    assert split_base(round_one_runs["fedavg"][2])[1] == {}


def test_fedsa_scores_only_the_clients_that_have_their_own_b(round_one_runs):
    """A client that never trained has no B of its own (it would be the base model): it is left
    out of fairness instead of counting as a client the method served."""
    rounds, clients = round_one_runs["fedsa-lora"][0], round_one_runs["fedsa-lora"][1]
    start = {r["client_id"]: r["global_model_local_test_loss"] for r in clients if r["round"] == 0}
    assert len(start) == 4 and all(math.isfinite(v) for v in start.values())  # round 0: all, one model
    trained = {r["client_id"] for r in clients if r["participated"]}
    final = {r["client_id"]: r["global_model_local_test_loss"] for r in clients if r["round"] == 2}
    assert trained and len(trained) < len(final)
    for cid, loss in final.items():
        if cid in trained:
            assert math.isfinite(loss) and abs(loss - start[cid]) > 1e-4
        else:
            assert loss is None or math.isnan(loss)
    scored = [final[c] for c in sorted(trained)]
    assert rounds[2]["fairness_mean"] == pytest.approx(sum(scored) / len(scored), rel=1e-9)


def test_drift_is_measured_from_where_each_client_started():
    from cllora.aggregate.drift import client_drift

    start = [{"w": torch.tensor([1.0, 0.0])}, {"w": torch.tensor([0.0, 1.0])}]
    trained = [{"w": torch.tensor([1.0, 3.0])}, {"w": torch.tensor([0.0, 5.0])}]
    drift = client_drift(start, trained)
    assert drift["drift_mean"] == pytest.approx(3.5) and drift["drift_max"] == pytest.approx(4.0)
    shared = client_drift({"w": torch.tensor([0.0, 0.0])}, trained)  # one start for all
    assert shared["drift_max"] == pytest.approx(5.0)


def test_base_model_is_handed_back_unmerged(tiny_model, tmp_path):
    from cllora.engine.loop import run_experiment
    from cllora.model import load_model, load_tokenizer

    base, tokenizer = load_model(tiny_model), load_tokenizer(tiny_model)
    before = {n: p.detach().clone() for n, p in base.named_parameters()}
    run_experiment(_config(tiny_model, "fedex-lora", rounds=1), tmp_path / "r", base_model=base,
                   tokenizer=tokenizer)
    after = dict(base.named_parameters())
    assert before.keys() == after.keys() and all(torch.equal(before[n], after[n]) for n in before)


def test_strategies_that_merge_refuse_eval_fp32():
    from cllora.config.settings import RunConfig
    from cllora.errors import UserError

    assert RunConfig(strategy="flora", engine="flower-sim").engine == "flower-sim"  # tested in test_flower
    with pytest.raises(UserError, match="eval_fp32"):
        RunConfig(strategy="fedex-lora", eval_fp32=True)


def test_run_figure_draws_the_aggregation_error(tmp_path):
    from cllora.report.run_figures import plot_aggregation_error, save_run_plots

    rounds = [{"round": 0, "global_test_loss": 3.0, "agg_error": None, "fairness_var": 0.1},
              {"round": 1, "global_test_loss": 2.5, "agg_error": 0.2, "fairness_var": 0.1},
              {"round": 2, "global_test_loss": 2.4, "agg_error": 0.3, "fairness_var": 0.1}]
    ax = plot_aggregation_error(rounds)
    assert ax.lines[0].get_xydata().tolist() == [[1.0, 0.2], [2.0, 0.3]]  # round 0 has none
    paths = save_run_plots(tmp_path, rounds, [])
    assert (tmp_path / "global_loss.png").is_file() and len(paths) == 3


def test_report_strategy_table_shows_the_aggregation_error():
    from pathlib import Path

    from cllora.config.settings import RunConfig
    from cllora.report.html import _strategies_html
    from cllora.analysis.runs import RunRecord
    from cllora.analysis.strategies import strategy_rows

    def record(strategy, errors):
        cfg = {**RunConfig().to_dict(), "model": "m", "scheme": "length", "alpha": 0.1, "strategy": strategy}
        rounds = [{"round": i, "global_test_loss": 3.0 - i, "agg_error": e} for i, e in enumerate(errors)]
        return RunRecord(strategy, Path("."), cfg, {}, rounds, [], None, None)

    rows = strategy_rows([record("fedavg", [None, 0.1, 0.3]), record("ffa-lora", [None, 0.0, 0.0])])
    assert {r["strategy"]: r["agg_error"] for r in rows} == {"fedavg": pytest.approx(0.2), "ffa-lora": 0.0}
    assert "Aggregation error" in _strategies_html(rows)
