"""Secure aggregation in cllora's Flower simulation: a SecAgg+ run's adapter and loss curve equal
the plain run's within the protocol's quantisation bound; what needs an individual update is not
computed, and the record says so; a client dropping mid-round leaves the round complete above the
threshold and stops the run below it with nothing of that round written (and it resumes)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from safetensors.numpy import load_file
from test_engine import tiny_config

from cllora import records
from cllora.engine.loop import run_experiment
from cllora.errors import RunFailed

pytestmark = pytest.mark.flower


def _adapter(out):
    return load_file(str(out / "adapter" / "adapter_model.safetensors"))


def test_a_secure_run_equals_the_plain_run_within_the_quantisation_bound(tiny_model, tmp_path):
    from cllora.flower.server import run_flower_simulation

    config = tiny_config(tiny_model, clients=3, clients_per_round=3, rounds=1)
    run_experiment(config, tmp_path / "plain1")  # the in-process engine equals plain Flower (test_flower)
    run_experiment(config.replace(rounds=2), tmp_path / "plain2")
    secure = config.replace(engine="flower-sim", secagg=True)
    run_flower_simulation(secure, tmp_path / "secure", log=lambda m: None)
    row = records.read_csv(tmp_path / "secure" / "rounds.csv")[-1]
    assert row["secagg_contributors"] == 3 and 0 < row["secagg_bound"] < 1e-4
    plain, sec = _adapter(tmp_path / "plain1"), _adapter(tmp_path / "secure")
    diff = max(float(np.abs(plain[k] - sec[k]).max()) for k in plain)
    assert 0 < diff <= row["secagg_bound"]  # quantised, within the bound: the one round's secure mean
    run_flower_simulation(secure.replace(rounds=2), tmp_path / "secure", resume=True, log=lambda m: None)
    a = records.read_csv(tmp_path / "plain2" / "rounds.csv")
    b = records.read_csv(tmp_path / "secure" / "rounds.csv")
    assert [r["round"] for r in b] == [0, 1, 2]
    for ra, rb in zip(a, b):  # a bound of ~1e-5 on each entry moves the loss by far less than 1e-3
        assert rb["global_test_loss"] == pytest.approx(ra["global_test_loss"], abs=1e-3)
        assert rb["train_loss_mean"] == pytest.approx(ra["train_loss_mean"], abs=1e-3) if ra["round"] else True
        assert rb["fairness_var"] == pytest.approx(ra["fairness_var"], rel=1e-2, abs=1e-6)
    for rb in b[1:]:  # no individual update on the server: these are not computed
        assert all(rb[k] is None for k in ("drift_mean", "drift_pairwise", "agg_error"))
    assert all(ra["drift_mean"] is not None for ra in a[1:])
    recorded = records.read_json(tmp_path / "secure" / "config.json")["secure_aggregation"]
    assert recorded["shares"] == 3 and recorded["threshold"] == 2
    assert any("drift" in item for item in recorded["not_computed"])


def _dropping_app(partition: int, round_num: int):
    """A secure ClientApp whose node holding `partition` fails in SecAgg+'s masked-vector stage of
    round `round_num` (as a crashed ClientApp does: its reply is an error)."""
    from cllora.flower.client import secure_app

    def drop(msg, context, call_next):
        configs = msg.content.config_records.get("secaggplus_configs")
        if configs is not None and configs.get("stage") == "collect_masked_vectors" \
                and int(context.node_config["partition-id"]) == partition and msg.metadata.group_id == str(round_num):
            raise RuntimeError("client dropped out")
        return call_next(msg, context)

    return secure_app(drop)


@pytest.mark.parametrize("threshold", [2, 3])
def test_a_client_dropping_mid_round_above_and_below_the_threshold(tiny_model, tmp_path, threshold):
    from cllora.flower.server import run_flower_simulation

    config = tiny_config(tiny_model, clients=3, clients_per_round=3, rounds=2, engine="flower-sim", secagg=True,
                         secagg_threshold=threshold)
    out = tmp_path / "run"
    if threshold == 2:  # 2 of 3 survive; each needs 2 live neighbours: the round completes without it
        run_flower_simulation(config, out, log=lambda m: None, clients_app=_dropping_app(1, 2))
        rows = records.read_csv(out / "rounds.csv")
        assert [r["round"] for r in rows] == [0, 1, 2]
        assert rows[2]["num_failed"] == 1 and rows[2]["secagg_contributors"] == 2
        assert math.isfinite(rows[2]["global_test_loss"])
        failed = [c for c in records.read_csv(out / "clients.csv") if c["round"] == 2 and c["failed"]]
        assert [c["client_id"] for c in failed] == [1] and "dropped out" in failed[0]["error"]
        return
    with pytest.raises(RunFailed, match="round 2: secure aggregation failed"):  # every client needs 3
        run_flower_simulation(config, out, log=lambda m: None, clients_app=_dropping_app(1, 2))
    assert [r["round"] for r in records.read_csv(out / "rounds.csv")] == [0, 1]  # nothing of round 2
    assert max(c["round"] for c in records.read_csv(out / "clients.csv")) == 1
    assert records.load_progress(out)[0] == 1  # the checkpoint is round 1's
    run_flower_simulation(config, out, resume=True, log=lambda m: None)  # no dropout now: it finishes
    assert [r["round"] for r in records.read_csv(out / "rounds.csv")] == [0, 1, 2]


def test_real_supernodes_run_a_secure_round(tiny_model, tmp_path):
    """`cllora flower-app --secagg` on real processes: a SuperLink and two SuperNodes, each starting a
    fresh ClientApp process for every SecAgg+ stage (the protocol's keys live in Context.state).
    Fairness is off to keep it short (about 9 minutes with three nodes and it on, under load)."""
    from cllora.flower.app import write_app
    from cllora.flower.local import LocalFederation

    config = tiny_config(tiny_model, clients=2, clients_per_round=2, rounds=1, fairness_every=0)
    (tmp_path / "exp.toml").write_text(config.to_toml())
    write_app(tmp_path / "app", tmp_path / "exp.toml", tmp_path / "out", {"secagg": True})
    with LocalFederation(2) as fed:
        row = fed.run(tmp_path / "app", timeout=500)
        log = fed.flwr("log", str(row["run-id"]), "local", "--show").stdout
    assert row["status"] == "finished:completed", (row, log[-3000:])
    assert "Secure aggregation completed" in log or "cllora: run finished" in log
    rows = records.read_csv(tmp_path / "out" / "rounds.csv")
    assert [r["round"] for r in rows] == [0, 1] and rows[1]["secagg_contributors"] == 2
    run_experiment(config, tmp_path / "plain")
    plain = records.read_csv(tmp_path / "plain" / "rounds.csv")
    assert rows[1]["global_test_loss"] == pytest.approx(plain[1]["global_test_loss"], abs=1e-3)
    bound = rows[1]["secagg_bound"]
    a, b = _adapter(tmp_path / "plain"), _adapter(tmp_path / "out")
    assert max(float(np.abs(a[k] - b[k]).max()) for k in a) <= bound
