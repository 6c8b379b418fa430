"""CONTRIBUTING.md's recipes, exercised: a toy partition scheme and a toy strategy, each added in
one registration to a registry (undone after the test), reach the config, the engine and the files."""

from __future__ import annotations

import numpy as np
import pytest

from cllora import partition, records
from cllora.aggregate import STRATEGIES
from cllora.aggregate.base import Aggregated, Strategy
from cllora.aggregate.fedavg import fedavg
from cllora.config.settings import RunConfig
from cllora.engine.loop import run_experiment
from cllora.errors import UserError
from cllora.partition import Partition, Scheme


def tiny(model: str, **changes) -> RunConfig:
    return RunConfig(model=model, dataset="sotu", max_train_examples=60, max_test_examples=12, max_length=32,
                     clients=4, clients_per_round=2, rounds=1, rank=2, local_test_fraction=0.25,
                     precision="fp32", **changes)


def partition_halves(labels, num_clients, rng, *, num_classes, **settings) -> Partition:
    rows = rng.permutation(len(labels))
    return Partition([np.sort(part) for part in np.array_split(rows, num_clients)])


@pytest.fixture
def halves(monkeypatch):
    monkeypatch.setitem(partition.SCHEMES, "halves", Scheme("halves", "halves", False, partition_halves))


def test_recipe_a_partition_scheme(halves, tiny_model, tmp_path):
    assert "halves" in partition.scheme_names() and partition.scheme_title("halves") == "halves"
    p = partition.make_partition("halves", np.zeros(10, np.int64), 2, np.random.default_rng(0), num_classes=1)
    assert sorted(np.concatenate(p.clients)) == list(range(10))
    with pytest.raises(UserError, match="alpha"):  # not a Dirichlet scheme: --alpha is refused
        from cllora.config.load import check_given
        check_given(tiny(tiny_model, scheme="halves"), ["alpha"])
    run_experiment(tiny(tiny_model, scheme="halves"), tmp_path / "run", log=lambda m: None)
    saved = records.read_json(tmp_path / "run" / "partition.json")
    assert saved["scheme"] == "halves" and len(saved["clients"]) == 4


def test_an_unregistered_scheme_is_refused(tiny_model):
    with pytest.raises(UserError, match="halves"):
        tiny(tiny_model, scheme="halves")


def _uniform(global_state, server_state, replies, opts):
    return Aggregated(fedavg([r.state for r in replies], [1.0] * len(replies)), server_state)


def test_recipe_a_strategy(monkeypatch, tiny_model, tmp_path):
    seen = {}

    def aggregate(global_state, server_state, replies, opts):
        seen["weights"] = [r.weight for r in replies]
        seen["mean"] = fedavg([r.state for r in replies], [1.0] * len(replies))
        return _uniform(global_state, server_state, replies, opts)

    monkeypatch.setitem(STRATEGIES, "uniform-avg", Strategy("uniform-avg", "the unweighted mean", aggregate))
    run_experiment(tiny(tiny_model, strategy="uniform-avg", scheme="quantity", alpha=0.5),
                   tmp_path / "run", log=lambda m: None)
    assert len(set(seen["weights"])) > 1  # the clients differ in size: FedAvg would weigh them
    from safetensors.torch import load_file

    kept = load_file(str(tmp_path / "run" / "adapter" / "adapter_model.safetensors"))
    assert kept and len(kept) == len(seen["mean"])
    assert records.saved_config(tmp_path / "run").strategy == "uniform-avg"
