"""The Flower engine: the same experiment as a Flower ClientApp and ServerApp (Message API).

The ServerApp runs cllora's own round loop (`simulation.run_experiment`) with `FlowerClients`:
local training and the per-client test losses go out as Flower messages to SuperNodes; sampling,
payload checks, FedAvg, evaluation on the global test set, the run directory and resume are the
in-process engine's code. Each SuperNode's ClientApp trains with `experiment.client_update` on
the partition its node config names (`partition-id`, `num-partitions`), or on its own texts
(`data-path`, a real client with its own corpus).

Two ways in:
  * `run_flower_simulation(config, out)` (`cllora run --engine flower-sim`): Flower's simulation
    engine, one virtual SuperNode per client.
  * `flwr run APP_DIR` against a SuperLink with SuperNodes (`cllora flower app DIR` writes the
    app directory); the ServerApp then reads its settings from Flower's run config.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from flwr.app import (ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord,
                      RecordDict)
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from cllora.config import RunConfig, check_keys, from_dict, load_config, load_toml, parse_class_edges
from cllora.errors import RunFailed, UserError
from cllora.experiment import (ClientUpdate, Experiment, client_update, evaluate_own, prepare_data,
                               prepare_experiment, prepare_own_data)
from cllora.train import TrainResult

CONNECT_TIMEOUT = 300.0  # seconds the server waits for every SuperNode to connect
APP_ENV = {"FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1"}  # never reinstall torch per run


# ---------------------------------------------------------------- messages

def _request(state: dict[str, torch.Tensor], config_json: str, round_num: int, evaluate: bool,
             node_id: int, message_type: str) -> Message:
    content = RecordDict({"adapter": ArrayRecord(state),
                          "config": ConfigRecord({"run": config_json, "round": round_num,
                                                  "evaluate": evaluate})})
    return Message(content, dst_node_id=node_id, message_type=message_type, group_id=str(round_num))


def _reply(msg: Message, metrics: dict[str, float], state: dict[str, torch.Tensor] | None = None) -> Message:
    content = RecordDict({"metrics": MetricRecord(metrics)})
    if state is not None:
        content["adapter"] = ArrayRecord(state)
    return Message(content, reply_to=msg)


def _replies(grid: Grid, messages: list[Message], keys: list, timeout: float | None) -> dict:
    """Send messages and return their replies by the key of the message each answers. Matched on
    the reply's reply-to id: the SuperLink itself answers for a node that went away."""
    replies = list(grid.send_and_receive(messages, timeout=timeout))
    sent = {m.metadata.message_id: key for m, key in zip(messages, keys)}
    return {sent[r.metadata.reply_to_message_id]: r for r in replies
            if r.metadata.reply_to_message_id in sent}


# ---------------------------------------------------------------- the ClientApp (a SuperNode)

_CLIENT_CACHE: dict[str, Experiment] = {}  # one prepared experiment per process


def node_identity(node_config: dict, clients: int) -> tuple[int, str | None]:
    """(partition id, own data path or None) from a SuperNode's node config, checked."""
    if "partition-id" not in node_config:
        raise UserError("this SuperNode has no partition-id in its node config; start it with "
                        "--node-config \"partition-id=0 num-partitions=N\"")
    pid = int(node_config["partition-id"])
    num = int(node_config.get("num-partitions", clients))
    if num != clients:
        raise UserError(f"node config num-partitions={num} but the run has clients={clients}")
    if not 0 <= pid < clients:
        raise UserError(f"node config partition-id={pid} is outside 0..{clients - 1}")
    path = node_config.get("data-path")
    return pid, (str(path) if path else None)


def client_experiment(config_json: str, node_config: dict) -> tuple[Experiment, int, int]:
    """(experiment, partition id, this client's index in the experiment's data), prepared once per
    process and run config: where the process lives on (Flower's simulation workers), the model
    stays loaded between messages."""
    from cllora.model import load_model, load_tokenizer, resolve_device, resolve_precision

    config = from_dict(json.loads(config_json))
    pid, data_path = node_identity(node_config, config.clients)
    key = f"{config_json}|{data_path}"
    if key not in _CLIENT_CACHE:
        _CLIENT_CACHE.clear()
        quiet = lambda message: None  # noqa: E731 - a ClientApp has no console of its own
        device = resolve_device(config.device)
        precision = resolve_precision(config.precision, device)
        tokenizer = load_tokenizer(config.model, log=quiet)
        data = (prepare_own_data(config, tokenizer, data_path) if data_path
                else prepare_data(config, tokenizer, quiet))
        base = load_model(config.model, device, precision, log=quiet)
        _CLIENT_CACHE[key] = prepare_experiment(config, base, tokenizer, device, precision, data, quiet)
    return _CLIENT_CACHE[key], pid, (0 if data_path else pid)  # own texts: the only client there


client_app = ClientApp()


@client_app.query()
def _query(msg: Message, context: Context) -> Message:
    """Which partition this SuperNode holds (the server maps partitions to nodes with it)."""
    clients = int(msg.content["config"]["clients"])
    pid, data_path = node_identity(dict(context.node_config), clients)
    return _reply(msg, {"partition-id": pid, "own-data": int(bool(data_path))})


@client_app.train()
def _train(msg: Message, context: Context) -> Message:
    """E local epochs from the server's adapter; reply with the local adapter and its numbers."""
    cfg = msg.content["config"]
    exp, pid, row = client_experiment(str(cfg["run"]), dict(context.node_config))
    state = msg.content["adapter"].to_torch_state_dict()
    update = client_update(exp, state, row, int(cfg["round"]), evaluate_own_split=bool(cfg["evaluate"]))
    r = update.result
    metrics = {"partition-id": pid, "num-examples": update.num_train_examples,
               "train-loss": r.train_loss, "steps": r.steps, "tokens": r.tokens, "train-seconds": r.seconds}
    if update.own_test_loss is not None:
        metrics["own-test-loss"] = update.own_test_loss
    return _reply(msg, metrics, update.state)


@client_app.evaluate()
def _evaluate(msg: Message, context: Context) -> Message:
    """The server's adapter on this client's own local test split."""
    cfg = msg.content["config"]
    exp, pid, row = client_experiment(str(cfg["run"]), dict(context.node_config))
    loss = evaluate_own(exp, msg.content["adapter"].to_torch_state_dict(), row)
    return _reply(msg, {"partition-id": pid, "test-loss": loss})


# ---------------------------------------------------------------- the server's view of the clients

class FlowerClients:
    """The run's clients as Flower SuperNodes, reached through a Grid (`simulation.Clients`)."""

    def __init__(self, grid: Grid, exp: Experiment, log: Callable[[str], None] = print,
                 connect_timeout: float = CONNECT_TIMEOUT):
        self.grid, self.log = grid, log
        self.config: RunConfig = exp.config
        self.config_json = json.dumps(self.config.to_dict(), sort_keys=True)
        self.timeout = self.config.round_timeout
        self.nodes = self._discover(connect_timeout)  # partition id -> node id
        self.silent: set[int] = set()  # clients that did not answer this round's training

    def _discover(self, connect_timeout: float) -> dict[int, int]:
        """Wait for the SuperNodes, then ask each which partition it holds."""
        need, deadline = self.config.clients, time.monotonic() + connect_timeout
        node_ids = list(self.grid.get_node_ids())
        while len(node_ids) < need:
            if time.monotonic() > deadline:
                raise RunFailed(f"only {len(node_ids)} of {need} SuperNodes connected within "
                                f"{connect_timeout:.0f} s; start one per client (partition-id 0..{need - 1})")
            time.sleep(1.0)
            node_ids = list(self.grid.get_node_ids())
        query = ConfigRecord({"clients": need})
        messages = [Message(RecordDict({"config": query}), dst_node_id=n, message_type=MessageType.QUERY)
                    for n in node_ids]
        nodes: dict[int, int] = {}
        for node_id, reply in _replies(self.grid, messages, node_ids, self.timeout).items():
            if reply.has_error():
                raise RunFailed(f"SuperNode {node_id} refused the run: {reply.error.reason}")
            pid = int(reply.content["metrics"]["partition-id"])
            if pid in nodes:
                raise RunFailed(f"SuperNodes {nodes[pid]} and {node_id} both hold partition-id={pid}; "
                                "give each SuperNode its own partition-id")
            nodes[pid] = node_id
        missing = sorted(set(range(need)) - set(nodes))
        if missing:
            raise RunFailed(f"no SuperNode holds partition-id {', '.join(map(str, missing))}")
        self.log(f"flower: {need} SuperNodes, partition → node {nodes}")
        return nodes

    def _exchange(self, message_type: str, state: dict, client_ids: list[int], round_num: int,
                  evaluate: bool) -> dict[int, Message]:
        """Send `state` to the clients' nodes; their replies by client id (missing = no reply)."""
        messages = [_request(state, self.config_json, round_num, evaluate, self.nodes[cid], message_type)
                    for cid in client_ids]
        return _replies(self.grid, messages, client_ids, self.timeout)

    def fit(self, global_state, client_ids, round_num, evaluate, downlink=None, own_states=None):
        replies = self._exchange(MessageType.TRAIN, global_state, client_ids, round_num, evaluate)
        self.silent = {cid for cid in client_ids if cid not in replies}
        return [self._update(cid, replies.get(cid)) for cid in client_ids]

    def _update(self, cid: int, reply: Message | None) -> ClientUpdate:
        nothing = TrainResult(float("nan"), 0, 0, 0.0)
        if reply is None:
            return ClientUpdate(cid, None, 0, nothing, error=f"no reply from node {self.nodes[cid]} "
                                                             f"within {self.timeout:g} s")
        if reply.has_error():
            return ClientUpdate(cid, None, 0, nothing, error=f"client error: {reply.error.reason}"[:300])
        try:
            m = reply.content["metrics"]
            state = reply.content["adapter"].to_torch_state_dict() if "adapter" in reply.content else None
            result = TrainResult(float(m["train-loss"]), int(m["steps"]), int(m["tokens"]),
                                 float(m["train-seconds"]))
            update = ClientUpdate(cid, state, int(m["num-examples"]), result, m.get("own-test-loss"))
        except (KeyError, TypeError, ValueError) as exc:
            return ClientUpdate(cid, None, 0, nothing, error=f"malformed reply: {exc}"[:300])
        if update.num_train_examples <= 0:
            update.error = f"reported {update.num_train_examples} training examples"
        return update

    def test_losses(self, global_state) -> np.ndarray:
        """Ask every client but those silent this round (they would only cost another timeout)."""
        ids = sorted(set(self.nodes) - self.silent)
        replies = self._exchange(MessageType.EVALUATE, global_state, ids, -1, True)
        losses = np.full(self.config.clients, np.nan)
        for cid, reply in replies.items():
            if not reply.has_error():
                losses[cid] = float(reply.content["metrics"]["test-loss"])
        lost = [cid for cid in sorted(self.nodes) if not math.isfinite(losses[cid])]
        if lost:
            self.log(f"flower: no local test loss from client(s) {', '.join(map(str, lost))}")
        return losses


# ---------------------------------------------------------------- the ServerApp

def _serve(grid: Grid, config: RunConfig, out: Path, resume: bool, overwrite: bool,
           log: Callable[[str], None], progress=None) -> dict:
    from cllora.engine import run_experiment

    return run_experiment(config, out, resume=resume, overwrite=overwrite, log=log, progress=progress,
                          clients=lambda exp, _progress: FlowerClients(grid, exp, log))


def settings_from_run_config(run_config: dict[str, Any]) -> tuple[RunConfig, Path, bool, bool]:
    """(config, out, resume, overwrite) from Flower's run config: `config-file` (a cllora TOML),
    `out`, `resume`, `overwrite`, and any RunConfig key (kebab- or snake-case) as an override."""
    values = {k.replace("-", "_"): v for k, v in run_config.items()}
    config_file = values.pop("config_file", "") or None
    out = Path(values.pop("out", "") or "runs/flower")
    resume, overwrite = bool(values.pop("resume", False)), bool(values.pop("overwrite", False))
    check_keys(values, "run-config (besides config-file, out, resume, overwrite)")
    if isinstance(values.get("class_edges"), str):  # run configs hold no lists: "10,20,40,80"
        values["class_edges"] = parse_class_edges(values["class_edges"], "run-config class-edges")
    return load_config(config_file, **values), out, resume, overwrite


server_app = ServerApp()


@server_app.main()
def _main(grid: Grid, context: Context) -> None:
    """`flwr run`: settings from the run config; results into its `out` directory."""
    config, out, resume, overwrite = settings_from_run_config(dict(context.run_config))
    summary = _serve(grid, config, out, resume, overwrite, print)
    print(f"cllora: run finished, final test loss {summary['final_test_loss']:.4f}; results: {out}")


APP_PYPROJECT = """\
# A Flower app running cllora (written by `cllora flower-app`). Its code is the installed
# package cllora (cllora.flower); this file only names it and declares the run-config keys.
# Run it with:  flwr run {app_dir} <connection> --stream
# and override with --run-config "out='/abs/dir' resume=true" (quote strings).
[project]
name = "cllora-flower-app"
version = "{version}"
description = "Federated LoRA fine-tuning under non-IID text (cllora) as a Flower app"
license = "MIT"
dependencies = ["cllora[flower]"]

[tool.flwr.app]
publisher = "cllora"

[tool.flwr.app.components]
serverapp = "cllora.flower:server_app"
clientapp = "cllora.flower:client_app"

[tool.flwr.app.config]
config-file = {config_file}
out = {out}
resume = false
overwrite = false
"""


def write_app(app_dir: Path, config_file: Path | None, out: Path) -> Path:
    """Write a Flower app directory (pyproject.toml) that runs `config_file` into `out`. Paths are
    made absolute: the ServerApp runs in the SuperLink's process tree, not in this directory."""
    from cllora import __version__

    if config_file is not None:
        load_toml(config_file)  # a missing or malformed file is named now, not inside Flower
    app_dir.mkdir(parents=True, exist_ok=True)
    path = app_dir / "pyproject.toml"
    path.write_text(APP_PYPROJECT.format(
        app_dir=app_dir, version=__version__, out=json.dumps(str(out.resolve())),
        config_file=json.dumps(str(config_file.resolve()) if config_file else "")))
    return path


def run_flower_simulation(config: RunConfig, out: Path, *, resume: bool = False, overwrite: bool = False,
                          log: Callable[[str], None] = print, progress=None) -> dict:
    """`cllora run --engine flower-sim`: the run through Flower's simulation engine (Ray), one
    virtual SuperNode per client, as many running at once as there are CPU cores (or GPUs)."""
    from flwr.simulation import run_simulation

    outcome: dict[str, Any] = {}
    app = ServerApp()

    @app.main()
    def _simulated(grid: Grid, context: Context) -> None:
        outcome["summary"] = _serve(grid, config, Path(out), resume, overwrite, log, progress)

    gpu = config.device != "cpu" and torch.cuda.is_available()
    cpus = max(1, os.cpu_count() or 1)
    backend = {"client_resources": {"num_cpus": 1, "num_gpus": 0.5 if gpu else 0.0},
               "init_args": {"num_cpus": cpus, "include_dashboard": False, "logging_level": "error",
                             "log_to_driver": False}}
    for key, value in APP_ENV.items():
        os.environ.setdefault(key, value)
    warnings.filterwarnings("ignore", message="Tip: In future versions of Ray", category=FutureWarning)
    run_simulation(server_app=app, client_app=client_app, num_supernodes=config.clients,
                   backend_config=backend)
    if "summary" not in outcome:
        raise RunFailed(f"the Flower simulation ended without finishing the run; what it wrote is in {out}")
    return outcome["summary"]
