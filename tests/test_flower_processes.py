"""Real Flower processes on loopback: a SuperLink and SuperNodes run the experiment with `flwr run`;
one SuperNode killed mid-run does not stop it. Ports are free ones; processes are always stopped."""

from __future__ import annotations

import math
import time

import pytest
from test_engine import metric_columns, tiny_config

from cllora import records
from cllora.engine.loop import run_experiment
from cllora.flower.app import write_app
from cllora.flower.local import LocalFederation, _groups, _process_groups, threads_per_node

pytestmark = pytest.mark.flower


def write_experiment(tmp_path, tiny_model, **changes):
    config = tiny_config(tiny_model, **{"clients": 2, "clients_per_round": 2, "rounds": 2, **changes})
    (tmp_path / "exp.toml").write_text(config.to_toml())
    write_app(tmp_path / "app", tmp_path / "exp.toml", tmp_path / "out")
    return config


def test_superlink_and_two_supernodes_run_the_experiment(tiny_model, tmp_path):
    config = write_experiment(tmp_path, tiny_model)
    with LocalFederation(2) as fed:
        row = fed.run(tmp_path / "app", timeout=400)
        groups = _groups([p.pid for p in [fed.superlink, *fed.nodes]])
        log = fed.flwr("log", str(row["run-id"]), "local", "--show").stdout
    assert row["status"] == "finished:completed", (row, log[-3000:])
    assert "cllora: run finished" in log
    assert not set(groups) & set(_process_groups().values()), "Flower processes left running"
    assert not fed.root.exists(), "the federation's temporary folder was left behind"
    out = tmp_path / "out"
    for name in ("config.json", "partition.json", "rounds.csv", "clients.csv", "summary.json",
                 "global_loss.png", "adapter/adapter_model.safetensors"):
        assert (out / name).is_file(), name
    messages = records.read_csv(out / "flower_messages.csv")  # one row per train/evaluate reply
    assert [(m["round"], m["kind"]) for m in messages] == \
        [(0, "evaluate")] * 2 + [(1, "train")] * 2 + [(1, "evaluate")] * 2 + [(2, "train")] * 2 + [(2, "evaluate")] * 2
    assert all(m["threads"] == threads_per_node(2) for m in messages)
    for m in messages:  # every step took time; a fresh process per message imports and loads anew
        assert all(m[k] > 0 for k in ("startup_s", "import_s", "load_s", "data_s", "compute_s")), m
        parts = sum(m[k] for k in ("dispatch_s", "startup_s", "import_s", "load_s", "data_s", "compute_s",
                                   "return_s"))
        assert parts == pytest.approx(m["total_s"], abs=1.0), m  # the steps cover the round trip
    run_experiment(config, tmp_path / "inprocess")  # the same run in-process: the same numbers
    for a, b in zip(metric_columns(tmp_path / "inprocess" / "rounds.csv"), metric_columns(out / "rounds.csv")):
        assert b["global_test_loss"] == pytest.approx(a["global_test_loss"], rel=1e-5)
        assert b["fairness_var"] == pytest.approx(a["fairness_var"], rel=1e-4, abs=1e-9)


def test_a_killed_supernode_is_recorded_and_the_run_finishes(tiny_model, tmp_path):
    write_experiment(tmp_path, tiny_model, round_timeout=40.0)
    with LocalFederation(2) as fed:
        run_id = fed.submit(tmp_path / "app")
        deadline = time.monotonic() + 300
        rounds_csv = tmp_path / "out" / "rounds.csv"
        while not (rounds_csv.is_file() and any(r["round"] == 1 for r in records.read_csv(rounds_csv))):
            assert time.monotonic() < deadline, "round 1 never finished"
            time.sleep(0.5)
        fed.kill_node(1)  # partition 1's machine dies between rounds 1 and 2
        row = fed.wait(run_id, timeout=400)
    assert row["status"] == "finished:completed", row
    rounds = records.read_csv(rounds_csv)
    assert [r["round"] for r in rounds] == [0, 1, 2]
    assert rounds[2]["num_failed"] == 1 and math.isfinite(rounds[2]["global_test_loss"])
    lost = [c for c in records.read_csv(tmp_path / "out" / "clients.csv") if c["round"] == 2 and c["failed"]]
    assert len(lost) == 1 and lost[0]["client_id"] == 1, lost
    assert "no reply" in lost[0]["error"] or "Unavailable" in lost[0]["error"], lost
    assert not math.isfinite(lost[0]["global_model_local_test_loss"])  # its local loss is unknown

