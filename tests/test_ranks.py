"""Heterogeneous LoRA ranks (--client-ranks): the spec, the rule by size, truncation, bytes, and what
a lower-rank client does in the round loop (FedAvg zero-pads, FLoRA stacks exactly)."""

from __future__ import annotations

import pytest
import torch

from cllora import records
from cllora.aggregate.traffic import sent_nbytes
from cllora.errors import UserError
from cllora.ranks import client_ranks, truncate

A, B = "m.q_proj.lora_A.default.weight", "m.q_proj.lora_B.default.weight"


def test_list_and_rule_by_size():
    assert client_ranks(None, 8, 3) == [8, 8, 8]
    assert client_ranks("2,8,4", 8, 3) == [2, 8, 4]
    # sizes 50, 10, 30, 20: smallest first → clients 1, 3 get 2; clients 2, 0 get 8
    assert client_ranks("by-size:2,8", 8, 4, sizes=[50, 10, 30, 20]) == [8, 2, 8, 2]
    assert client_ranks("by-size:1,2,4", 4, 3, sizes=[5, 5, 5]) == [1, 2, 4]  # ties by id


@pytest.mark.parametrize("spec, clients, message", [
    ("4,8", 3, "lists 2 ranks for 3 clients"),
    ("4,0,4", 3, "between 1 and rank (8); got 0"),
    ("4,16,4", 3, "between 1 and rank (8); got 16"),
    ("4,x,4", 3, "comma-separated integers"),
    ("by-size:2,4,8,8", 3, "4 groups for 3 clients"),
    ("by-size:", 3, "comma-separated integers"),
])
def test_bad_specs_are_named(spec, clients, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        client_ranks(spec, 8, clients, sizes=[1] * clients)


def test_rule_by_size_needs_every_size():
    with pytest.raises(UserError, match="give one rank per client"):
        client_ranks("by-size:2,4", 4, 3, sizes=[7])


def test_truncate_zeroes_the_components_above_r_and_copies():
    state = {A: torch.ones(4, 3), B: torch.ones(5, 4), "other": torch.ones(2)}
    cut = truncate(state, 2)
    assert cut[A][:2].eq(1).all() and cut[A][2:].eq(0).all()
    assert cut[B][:, :2].eq(1).all() and cut[B][:, 2:].eq(0).all()
    assert state[A].eq(1).all() and cut["other"] is state["other"]


def test_bytes_count_only_the_components_sent():
    state = {A: torch.ones(4, 3), B: torch.ones(5, 4)}
    assert sent_nbytes(state) == (12 + 20) * 4
    assert sent_nbytes(state, 1) == (3 + 5) * 4  # a rank-1 client: one row of A, one column of B
    stack = {f"stack/0/{A}": truncate(state, 2)[A], f"stack/0/{B}": truncate(state, 2)[B]}
    assert sent_nbytes(stack, 4) == (2 * 3 + 5 * 2) * 4  # stacked factors: their nonzero components


def test_toml_list_and_cli_errors(tiny_model, tmp_path):
    from test_engine import tiny_config

    from cllora.cli import main

    assert tiny_config(tiny_model, clients=3, client_ranks=[1, 2, 4]).client_ranks == "1,2,4"
    out = tmp_path / "bad"
    assert main(["run", "--model", tiny_model, "--quiet", "--out", str(out), "--clients", "3",
                 "--rank", "4", "--client-ranks", "2,4"]) == 2
    assert not out.exists()


# ---------------------------------------------------------------- in the round loop (tiny model, rank 4)

def _run(tiny_model, root, name, **changes):
    from test_engine import tiny_config

    from cllora.engine.loop import run_experiment

    cfg = tiny_config(tiny_model, clients=4, rounds=1, max_train_examples=120, max_test_examples=12,
                      **changes)
    summary = run_experiment(cfg, root / name)
    return (records.read_csv(root / name / "rounds.csv"), records.read_csv(root / name / "clients.csv"),
            records.load_checkpoint(root / name)[1], summary)


@pytest.fixture(scope="module")
def runs(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("ranks")
    return {name: _run(tiny_model, root, name, **changes) for name, changes in {
        "full": {}, "all-4": {"client_ranks": "4,4,4,4"}, "mixed": {"client_ranks": "1,4,2,2"},
        "rank-1": {"client_ranks": "1,1,1,1"},
        "flora-1": {"client_ranks": "1,1,1,1", "strategy": "flora"}, "flora": {"strategy": "flora"}}.items()}


def _timeless(rows):
    return [{k: v for k, v in r.items() if k not in records.TIMING_COLUMNS} for r in rows]


def test_full_ranks_change_nothing_and_a_lower_rank_changes_its_client(runs):
    assert _timeless(runs["all-4"][0]) == _timeless(runs["full"][0])
    # round 1 starts every run from the same adapter with the same clients sampled: in "mixed"
    # (ranks 1,4,2,2; clients 1 and 3 sampled) a rank-4 client trains exactly as in "full", a lower-rank one differently
    full = {c["client_id"]: c for c in runs["full"][1] if c["round"] == 1 and c["participated"]}
    mixed = [c for c in runs["mixed"][1] if c["round"] == 1 and c["participated"]]
    assert {c["client_id"] for c in mixed} == set(full)
    assert {c["rank"] == 4 for c in mixed} == {True, False}  # one of each sampled: truncation is exercised
    for c in mixed:
        same = (c["train_loss"], c["local_model_test_loss"]) == \
            (full[c["client_id"]]["train_loss"], full[c["client_id"]]["local_model_test_loss"])
        assert same == (c["rank"] == 4), c
    assert _timeless(runs["mixed"][0])[1] != _timeless(runs["full"][0])[1]


def test_clients_csv_shows_each_rank(runs):
    assert [(c["client_id"], c["rank"]) for c in runs["mixed"][1] if c["round"] == 1] == \
        [(0, 1), (1, 4), (2, 2), (3, 2)]
    assert {c["rank"] for c in runs["full"][1]} == {4}


def test_bytes_scale_with_the_sampled_clients_ranks(runs):
    # the tiny model's q/v layers are square (64×64): an adapter's bytes are proportional to its rank
    adapter = runs["full"][3]["adapter_bytes"]
    sampled = [c["rank"] for c in runs["mixed"][1] if c["round"] == 1 and c["participated"]]
    row = runs["mixed"][0][1]
    assert row["bytes_up"] == row["bytes_down"] == adapter * sum(sampled) // 4
    assert runs["full"][0][1]["bytes_up"] == adapter * len(sampled)


def test_fedavg_zero_pads_lower_ranks(runs):
    # every client trained rank 1 only: averaging the zero-padded factors leaves components 1-3 at zero
    state = runs["rank-1"][2]
    for name, t in state.items():
        rest = t[1:] if ".lora_A." in name else t[:, 1:]
        first = t[:1] if ".lora_A." in name else t[:, :1]
        assert rest.eq(0).all() and first.abs().sum() > 0, name
    assert all(t.abs().sum() > 0 for n, t in runs["full"][2].items() if ".lora_A." in n)


def test_flora_stacks_rank_one_updates_exactly(runs):
    # two sampled clients of rank 1: the merged update Σ p_k s B_k A_k of every layer has rank 2
    # (the fp32 total has ~1e-9 noise in its other singular values); rank 4 clients give 2 × 4
    from cllora.aggregate.checkpoint_state import split_base

    def ranks(name):
        deltas = split_base(runs[name][2])[1].values()
        return {int(torch.linalg.matrix_rank(d.double(), rtol=1e-6)) for d in deltas}

    assert ranks("flora-1") == {2} and ranks("flora") == {8}


def test_a_lower_rank_client_trains_only_its_components(tiny_model):
    from test_engine import tiny_config

    from cllora.engine.client import client_update
    from cllora.engine.experiment import prepare_experiment
    from cllora.engine.runtime import build_runtime
    from cllora.model import load_model

    cfg = tiny_config(tiny_model, clients=4, strategy="scaffold", client_ranks="2,4,4,4",
                      max_train_examples=120, max_test_examples=12)
    exp = prepare_experiment(cfg, load_model(tiny_model), build_runtime(cfg, load_model=False).tokenizer,
                             torch.device("cpu"), "fp32", log=lambda m: None)
    start = {k: v + 0.01 if ".lora_B." in k else v for k, v in exp.initial_state.items()}  # all nonzero
    c = {f"c/{k}": torch.full_like(v, 1e-3) for k, v in start.items()}
    update = client_update(exp, start, 0, 1, downlink=c)
    for name, t in update.state.items():
        low, high = (t[:2], t[2:]) if ".lora_A." in name else (t[:, :2], t[:, 2:])
        s_low = start[name][:2] if ".lora_A." in name else start[name][:, :2]
        assert high.eq(0).all() and not torch.equal(low, s_low), name
    for part in (update.extra, update.client_state):  # SCAFFOLD's Δc_i and c_i: rank 2 as well
        assert all((t[2:] if ".lora_A." in n else t[:, 2:]).eq(0).all() for n, t in part.items())


def test_params_counts_the_bytes_a_run_records(runs, tiny_model, tmp_path, capsys):
    # `cllora params --client-ranks` shares the engine's count: the mixed-rank FedAvg run's round bytes
    # are the sum over its sampled clients of the per-rank bytes params prints
    import json

    from cllora.cli import main

    assert main(["params", tiny_model, "--rank", "4", "--strategy", "fedavg", "--client-ranks", "1,4,2,2",
                 "--json"]) == 0
    by_rank = json.loads(capsys.readouterr().out)[0]["bytes_per_round_by_rank"]
    sampled = [c["rank"] for c in runs["mixed"][1] if c["round"] == 1 and c["participated"]]
    row = runs["mixed"][0][1]
    assert row["bytes_up"] == sum(by_rank[str(r)]["up"] for r in sampled)
    assert row["bytes_down"] == sum(by_rank[str(r)]["down"] for r in sampled)


def test_flora_round_bytes_on_meta_tensors_equal_the_runs(tiny_model, tmp_path):
    # FLoRA's downlink stacks the previous round's clients at their own ranks: counted on meta
    # tensors from those ranks, it equals what the engine counted from the real stacked factors
    from cllora.aggregate import get_strategy, strategy_options
    from cllora.aggregate.traffic import simulated_round_bytes
    from cllora.commands.params import meta_adapter

    from test_engine import tiny_config

    from cllora.engine.loop import run_experiment

    cfg = tiny_config(tiny_model, clients=4, rounds=2, max_train_examples=120, max_test_examples=12,
                      strategy="flora", client_ranks="1,4,2,2")
    run_experiment(cfg, tmp_path / "flora-mixed")
    rounds = records.read_csv(tmp_path / "flora-mixed" / "rounds.csv")
    clients = records.read_csv(tmp_path / "flora-mixed" / "clients.csv")
    adapter = meta_adapter(tiny_model, cfg.rank, cfg.lora_alpha, cfg.targets)
    options = strategy_options("flora", cfg.to_dict())
    sampled = {t: [c["rank"] for c in clients if c["round"] == t and c["participated"]] for t in (1, 2)}
    for t, previous in ((1, None), (2, sampled[1])):
        up, down = simulated_round_bytes(get_strategy("flora"), adapter, options, sampled[t], previous)
        assert (rounds[t]["bytes_up"], rounds[t]["bytes_down"]) == (up, down)
    assert rounds[2]["bytes_down"] > rounds[1]["bytes_down"]  # the stacked factors went down
