"""The Flower engine: its simulation equals the in-process engine; settings and node configs are checked."""

from __future__ import annotations

import pytest

pytest.importorskip("flwr")

from cllora import records  # noqa: E402
from cllora.errors import UserError  # noqa: E402
from cllora.flower import node_identity, run_flower_simulation, settings_from_run_config  # noqa: E402
from cllora.engine import run_experiment  # noqa: E402

from test_engine import metric_columns, tiny_config  # noqa: E402

COMPARED = ("global_test_loss", "fairness_var", "fairness_max", "local_models_test_loss_mean",
            "local_models_global_test_loss_mean", "train_loss_mean", "bytes_cumulative", "num_failed")


@pytest.mark.flower
def test_flower_simulation_equals_the_in_process_engine(tiny_model, tmp_path):
    config = tiny_config(tiny_model, clients=4, rounds=2)
    run_experiment(config, tmp_path / "inprocess")
    summary = run_flower_simulation(config.replace(engine="flower-sim"), tmp_path / "flower")
    for name in ("config.json", "partition.json", "rounds.csv", "clients.csv", "summary.json",
                 "checkpoint.safetensors", "global_loss.png", "adapter/adapter_model.safetensors"):
        assert (tmp_path / "flower" / name).is_file(), name
    a = metric_columns(tmp_path / "inprocess" / "rounds.csv")
    b = metric_columns(tmp_path / "flower" / "rounds.csv")
    assert [r["round"] for r in b] == [0, 1, 2]
    for ra, rb in zip(a, b):  # same sampled clients, same seeds: same numbers up to float noise
        for key in COMPARED:
            expected = ra[key] if ra[key] is None else pytest.approx(ra[key], rel=1e-5, abs=1e-9)
            assert rb[key] == expected, (ra["round"], key)
    clients_a = records.read_csv(tmp_path / "inprocess" / "clients.csv")
    clients_b = records.read_csv(tmp_path / "flower" / "clients.csv")
    assert [c["participated"] for c in clients_a] == [c["participated"] for c in clients_b]
    assert summary["final_test_loss"] < summary["initial_test_loss"]


def test_run_config_gives_file_settings_overrides_and_paths(tmp_path):
    toml = tmp_path / "exp.toml"
    toml.write_text('[run]\nscheme = "length"\nalpha = 0.1\nclients = 4\nrounds = 7\n')
    config, out, resume, overwrite = settings_from_run_config(
        {"config-file": str(toml), "out": str(tmp_path / "o"), "clients-per-round": 3, "rounds": 2,
         "class-edges": "20,40,80,160", "resume": True})
    assert (config.scheme, config.alpha, config.clients, config.clients_per_round, config.rounds) == \
        ("length", 0.1, 4, 3, 2)
    assert config.class_edges == (20.0, 40.0, 80.0, 160.0)
    assert (out, resume, overwrite) == (tmp_path / "o", True, False)
    with pytest.raises(UserError, match="run-config .* key 'num_server_rounds' is not a run setting"):
        settings_from_run_config({"num-server-rounds": 3})
    with pytest.raises(UserError, match="does not exist"):
        settings_from_run_config({"config-file": str(tmp_path / "missing.toml")})


def test_node_config_names_its_partition_or_says_what_is_wrong():
    assert node_identity({"partition-id": 2, "num-partitions": 4}, 4) == (2, None)
    assert node_identity({"partition-id": 0, "data-path": "/data/mine.jsonl"}, 3) == (0, "/data/mine.jsonl")
    with pytest.raises(UserError, match="no partition-id"):
        node_identity({}, 4)
    with pytest.raises(UserError, match="num-partitions=2 but the run has clients=4"):
        node_identity({"partition-id": 0, "num-partitions": 2}, 4)
    with pytest.raises(UserError, match="partition-id=4 is outside 0..3"):
        node_identity({"partition-id": 4, "num-partitions": 4}, 4)


def test_a_client_with_its_own_texts_trains_on_them(tiny_model, tmp_path):
    import json as json_mod

    from cllora.experiment import client_update, evaluate_own
    from cllora.flower import client_experiment

    texts = [f"Paragraph {i} of a hospital's own notes, about budgets and the weather in spring." * (1 + i % 4)
             for i in range(30)]
    (tmp_path / "mine.jsonl").write_text("".join(json_mod.dumps({"text": t}) + "\n" for t in texts))
    config = tiny_config(tiny_model, clients=3, clients_per_round=1)
    exp, pid, row = client_experiment(json_mod.dumps(config.to_dict()),
                                      {"partition-id": 2, "num-partitions": 3,
                                       "data-path": str(tmp_path / "mine.jsonl")})
    assert (pid, row) == (2, 0)
    train, test = exp.data.client_train[0], exp.data.client_test[0]
    assert len(train) + len(test) == 30 and len(test) == 3  # local_test_fraction 0.1 of its own texts
    update = client_update(exp, exp.initial_state, row, 1, evaluate_own_split=True)
    assert update.num_train_examples == 27 and update.own_test_loss is not None
    assert evaluate_own(exp, update.state, row) < evaluate_own(exp, exp.initial_state, row)  # it learnt
