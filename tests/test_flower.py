"""The Flower engine: its simulation equals the in-process engine; settings and node configs are checked."""

from __future__ import annotations

import pytest
from test_engine import metric_columns, tiny_config

from cllora import records, runner
from cllora.engine.loop import run_experiment
from cllora.errors import UserError
from cllora.flower.client import node_identity, thread_budget
from cllora.flower.server import settings_from_run_config

COMPARED = ("global_test_loss", "fairness_var", "fairness_max", "local_models_test_loss_mean",
            "local_models_global_test_loss_mean", "train_loss_mean", "bytes_cumulative", "num_failed",
            "fairness_var_corrected", "fairness_se_mean")  # standard errors pooled from the clients' spreads


@pytest.mark.flower
@pytest.mark.parametrize("changes", [{"strategy": "fedavg"},
                                     {"strategy": "scaffold"},  # downlink, uplink, client state
                                     {"strategy": "ffa-lora"},  # only B travels
                                     {"strategy": "flora"},  # merges into every node's base
                                     {"strategy": "fedex-lora"},
                                     {"client_ranks": "1,4,2,4"},  # each ClientApp trains its own rank
                                     {"scheme": "natural", "client_key": "president"}],  # a node per president
                         ids=["fedavg", "scaffold", "ffa-lora", "flora", "fedex-lora", "client-ranks", "natural"])
def test_flower_simulation_equals_the_in_process_engine(tiny_model, tmp_path, changes):
    config = tiny_config(tiny_model, clients=4, rounds=2, **changes)
    run_experiment(config, tmp_path / "inprocess")
    summary = runner.run(config.replace(engine="flower-sim"), tmp_path / "flower")  # figures: the runner's
    for name in ("config.json", "partition.json", "rounds.csv", "clients.csv", "summary.json",
                 "checkpoint.safetensors", "global_loss.png", "adapter/adapter_model.safetensors"):
        assert (tmp_path / "flower" / name).is_file(), name
    _assert_same_rounds(tmp_path, COMPARED)
    clients_a = records.read_csv(tmp_path / "inprocess" / "clients.csv")
    clients_b = records.read_csv(tmp_path / "flower" / "clients.csv")
    assert [c["participated"] for c in clients_a] == [c["participated"] for c in clients_b]
    assert [c["rank"] for c in clients_a] == [c["rank"] for c in clients_b]
    assert summary["final_test_loss"] < summary["initial_test_loss"]


def _assert_same_rounds(tmp_path, keys) -> list[dict]:
    """The Flower run's rounds.csv equals the in-process one's in `keys`, up to float noise."""
    a = metric_columns(tmp_path / "inprocess" / "rounds.csv")
    b = metric_columns(tmp_path / "flower" / "rounds.csv")
    assert [r["round"] for r in b] == [0, 1, 2]
    for ra, rb in zip(a, b):  # same sampled clients, same seeds: same numbers up to float noise
        for key in keys:
            expected = ra[key] if ra[key] is None else pytest.approx(ra[key], rel=1e-5, abs=1e-9)
            assert rb[key] == expected, (ra["round"], key)
    return b


@pytest.mark.flower
def test_flower_simulation_with_dp_equals_the_in_process_engine(tiny_model, tmp_path):
    """Client-level DP lives in cllora's own round loop, which both engines run: the same clipped
    updates, the same noise and the same accountant give the same rounds. Same noise needs the
    seeded stream (secure noise, the default, is fresh in every run by design)."""
    config = tiny_config(tiny_model, clients=4, rounds=2, dp_clip=0.05, dp_noise=0.5,
                         dp_seeded_noise_voids_guarantee=True)
    run_experiment(config, tmp_path / "inprocess")
    runner.run(config.replace(engine="flower-sim"), tmp_path / "flower")
    dp = ("dp_epsilon", "dp_noise_std", "dp_clipped_share", "dp_clip_factor_mean")
    rows = _assert_same_rounds(tmp_path, COMPARED + dp)
    assert 0 < rows[1]["dp_epsilon"] < rows[2]["dp_epsilon"]  # DP really ran, and composes
    assert rows[2]["dp_noise_std"] > 0 and 0 < rows[2]["dp_clip_factor_mean"] <= 1

def test_run_config_gives_file_settings_overrides_and_paths(tmp_path):
    toml = tmp_path / "exp.toml"
    toml.write_text('[run]\nscheme = "length"\nalpha = 0.1\nclients = 4\nrounds = 7\n')
    config, out, resume, overwrite, cap = settings_from_run_config(
        {"config-file": str(toml), "out": str(tmp_path / "o"), "clients-per-round": 3, "rounds": 2,
         "class-edges": "20,40,80,160", "resume": True, "max-client-examples": 500})
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


def test_a_node_config_sets_the_clientapps_torch_threads():
    import torch

    before = torch.get_num_threads()
    try:
        assert thread_budget({"num-threads": 1}) == 1 == torch.get_num_threads()
        assert thread_budget({}) == 1  # no key: left as it is (all cores, or what the launcher set)
        with pytest.raises(UserError, match="num-threads=0"):
            thread_budget({"num-threads": 0})
    finally:
        torch.set_num_threads(before)


def test_a_client_with_its_own_texts_trains_on_them(tiny_model, tmp_path):
    import json as json_mod

    from cllora.engine.client import client_update
    from cllora.engine.evaluation import score_own
    from cllora.flower.client import client_experiment

    texts = [f"Paragraph {i} of a hospital's own notes, about budgets and the weather in spring." * (1 + i % 4)
             for i in range(30)]
    (tmp_path / "mine.jsonl").write_text("".join(json_mod.dumps({"text": t}) + "\n" for t in texts))
    config = tiny_config(tiny_model, clients=3, clients_per_round=1)
    exp, pid, row, _ = client_experiment(json_mod.dumps(config.to_dict()),
                                      {"partition-id": 2, "num-partitions": 3,
                                       "data-path": str(tmp_path / "mine.jsonl")})
    assert (pid, row) == (2, 0)
    train, test = exp.data.client_train[0], exp.data.client_test[0]
    assert len(train) + len(test) == 30 and len(test) == 3  # local_test_fraction 0.1 of its own texts
    update = client_update(exp, exp.initial_state, row, 1, evaluate_own_split=True)
    assert update.num_train_examples == 27 and update.own_test_loss is not None
    assert score_own(exp, update.state, row)[0] < score_own(exp, exp.initial_state, row)[0]  # it learnt


# ---------------------------------------------------------------- the server's checks of the replies

class FakeGrid:
    """A Grid whose nodes 10, 11, 12 answer with `answer(message)` (None: no reply)."""

    def __init__(self, answer):
        self.answer, self.pending = answer, []

    def get_node_ids(self):
        return [10, 11, 12]

    def push_messages(self, messages):
        for m in messages:
            m.metadata.__dict__["_message_id"] = m.object_id
            reply = self.answer(m)
            if reply is not None:
                self.pending.append(reply)
        return [m.metadata.message_id for m in messages]

    def pull_messages(self, ids):
        ready = [r for r in self.pending if r.metadata.reply_to_message_id in set(ids)]
        self.pending = [r for r in self.pending if r not in ready]
        return ready

    def send_and_receive(self, messages, timeout=None):
        return self.pull_messages(list(self.push_messages(messages)))


@pytest.fixture
def task_identity(monkeypatch):
    """Flower's Message needs the identity of the task that builds it (set by Flower in a real run)."""
    from flwr.supercore.task_identity import TaskIdentity

    for name in ("_run_id", "_node_id", "_task_id"):
        monkeypatch.setattr(TaskIdentity, name, 1)


def fake_federation(train_metrics, eval_metrics=None, own_data=(), sizes=(30, 20, 10), **config):
    """FlowerClients over a FakeGrid: node 10+p holds partition p (own data where p in own_data);
    train replies carry train_metrics(p) and a zero adapter, evaluate replies eval_metrics(p)."""
    from types import SimpleNamespace

    import numpy as np
    import torch
    from flwr.app import ArrayRecord, Message, MessageType, MetricRecord, RecordDict

    from cllora.config.settings import RunConfig
    from cllora.flower.supernodes import FlowerClients

    def answer(m):
        pid = m.metadata.dst_node_id - 10
        if m.metadata.message_type == MessageType.QUERY:
            content = {"metrics": MetricRecord({"partition-id": pid, "own-data": int(pid in own_data)})}
        elif m.metadata.message_type == MessageType.TRAIN:
            content = {"metrics": MetricRecord(train_metrics(pid)),
                       "adapter": ArrayRecord({"w": torch.zeros(2)})}
        elif eval_metrics(pid) is None:
            return None  # this node never answers
        else:
            content = {"metrics": MetricRecord(eval_metrics(pid))}
        return Message(RecordDict(content), reply_to=m)

    exp = SimpleNamespace(config=RunConfig().replace(clients=3, clients_per_round=3, **config),
                          data=SimpleNamespace(client_train=[np.arange(n) for n in sizes]), base_total=None)
    logged = []
    return FlowerClients(FakeGrid(answer), exp, logged.append), logged


def trained(examples):
    return lambda pid: {"partition-id": pid, "num-examples": examples(pid), "train-loss": 2.0, "steps": 1,
                        "tokens": 10, "train-seconds": 0.1}


def test_a_client_claiming_more_examples_than_its_partition_is_rejected(task_identity):
    clients, _ = fake_federation(trained(lambda pid: 10**9 if pid == 1 else (30, 20, 10)[pid]))
    updates = clients.fit({"w": __import__("torch").zeros(2)}, [0, 1, 2], 1, False)
    assert [u.error for u in updates][::2] == [None, None]
    assert updates[1].error == "claims 1000000000 training examples; its partition has 20"
    assert updates[1].failed


def test_a_client_with_its_own_data_has_its_weight_capped(task_identity):
    clients, logged = fake_federation(trained(lambda pid: 10**9 if pid == 2 else (30, 20, 10)[pid]),
                                      own_data=(2,))
    updates = clients.fit({"w": __import__("torch").zeros(2)}, [0, 1, 2], 1, False)
    assert [u.num_train_examples for u in updates] == [30, 20, 10000]  # the default cap
    assert not any(u.failed for u in updates)
    assert any("client 2" in line and "capped at 10000" in line for line in logged), logged
    clients.max_client_examples = 5
    assert clients.fit({"w": __import__("torch").zeros(2)}, [2], 2, False)[0].num_train_examples == 5


def test_a_malformed_evaluate_reply_counts_as_a_failed_client(task_identity):
    import math

    fine = {"test-loss": 1.5, "test-se2": 0.04, "test-resid": 0.3, "test-texts": 3, "test-h-sum": 0.4,
            "test-h-den": 0.2}
    replies = {0: fine, 1: {"x": 1.0}, 2: None}  # fine, malformed, silent
    clients, logged = fake_federation(trained(lambda pid: 1), eval_metrics=replies.get, round_timeout=0.5)
    losses, se = clients.test_losses({"w": __import__("torch").zeros(2)})
    assert losses[0] == 1.5 and math.isnan(losses[1]) and math.isnan(losses[2])
    assert se[0] == pytest.approx(0.2) and math.isnan(se[1]) and math.isnan(se[2])
    assert logged[-1] == ("flower: no local test loss from client 1 (malformed reply: KeyError('test-loss')); "
                          "client 2 (no reply within 0.5 s)")


def test_clients_with_their_own_identical_texts_draw_their_own_random_streams(tiny_model, tmp_path, task_identity):
    import json as json_mod

    import torch
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict

    from cllora.flower.client import _train, client_experiment

    texts = [f"Paragraph {i} about harvests, railways and the weather of the year {1800 + i}." * (1 + i % 3)
             for i in range(40)]
    (tmp_path / "mine.jsonl").write_text("".join(json_mod.dumps({"text": t}) + "\n" for t in texts))
    config = tiny_config(tiny_model, clients=3, clients_per_round=1, lora_dropout=0.1)
    config_json = json_mod.dumps(config.to_dict())
    node = {"num-partitions": 3, "data-path": str(tmp_path / "mine.jsonl")}
    initial = client_experiment(config_json, {**node, "partition-id": 0})[0].initial_state
    states = []
    for pid in (0, 1):
        content = RecordDict({"adapter": ArrayRecord(initial),
                              "config": ConfigRecord({"run": config_json, "round": 1, "evaluate": False})})
        msg = Message(content, dst_node_id=1, message_type=MessageType.TRAIN)
        msg.metadata.__dict__["_message_id"] = msg.object_id
        context = Context(1, 1, {**node, "partition-id": pid}, RecordDict(), {})
        reply = _train(msg, context)
        assert reply.content["metrics"]["partition-id"] == pid
        states.append(reply.content["adapter"].to_torch_state_dict())
    assert states[0].keys() == states[1].keys()
    assert any(not torch.equal(states[0][k], states[1][k]) for k in states[0])  # same texts, own draws


def test_a_query_needs_neither_torch_nor_transformers():
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from flwr.supercore.task_identity import TaskIdentity\n"
        "TaskIdentity._run_id = TaskIdentity._node_id = TaskIdentity._task_id = 1\n"
        "from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict\n"
        "import cllora.flower.server\n"
        "from cllora.flower.client import _query\n"
        "msg = Message(RecordDict({'config': ConfigRecord({'clients': 2})}), dst_node_id=1,\n"
        "              message_type=MessageType.QUERY)\n"
        "msg.metadata.__dict__['_message_id'] = msg.object_id\n"
        "reply = _query(msg, Context(1, 1, {'partition-id': 1}, RecordDict(), {}))\n"
        "print(int(reply.content['metrics']['partition-id']),\n"
        "      sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[-2] == "1 []"


def test_a_messages_time_splits_into_its_steps():
    from cllora.flower.timing import message_row, process_age

    metrics = {"t-process-start": 101.5, "t-entry": 104.0, "t-exit": 110.0, "import-seconds": 1.5,
               "load-seconds": 2.0, "data-seconds": 0.5, "compute-seconds": 1.75, "threads": 2}
    row = message_row(3, "train", 4, sent=100.0, arrived=110.25, metrics=metrics)
    assert row == {"round": 3, "kind": "train", "client_id": 4, "threads": 2, "dispatch_s": 1.5,
                   "startup_s": 2.5, "import_s": 1.5, "load_s": 2.0, "data_s": 0.5, "compute_s": 1.75,
                   "return_s": 0.25, "total_s": 10.25}
    assert message_row(3, "train", 4, 100.0, 110.25, {"test-loss": 1.0}) is None  # no clock readings
    import subprocess
    import sys
    import time

    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", "from cllora.flower.timing import process_age as a; print(a())"],
                          capture_output=True, text=True, check=True)
    tick = 0.02  # /proc counts process starts in clock ticks (10 ms)
    assert 0 < float(done.stdout) < time.monotonic() - start + tick  # a fresh process: younger than the call
    assert process_age() > float(done.stdout)  # this one is older
