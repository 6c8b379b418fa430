"""The Flower engine's server side: the same experiment's round loop over Flower SuperNodes.

The ServerApp runs cllora's own round loop (`engine.run_experiment`) with `FlowerClients`:
local training and the per-client test losses go out as Flower messages (Message API) to
SuperNodes, whose ClientApp is `cllora.flower_client`; sampling, payload checks, FedAvg,
evaluation on the global test set, the run directory and resume are the in-process engine's code.
Replies are pulled every PULL_INTERVAL seconds (Flower's `send_and_receive` sleeps 3 s).

The server checks what a client claims as its FedAvg weight: a partition client must report its
partition's size (the server prepares the same data); a client with its own texts, whose size
the server cannot know, weighs at most `max-client-examples` (run config). A `flwr run`
deployment writes each message's time breakdown to `flower_messages.csv` (`cllora.flower_timing`).

Two ways in:
  * `run_flower_simulation(config, out)` (`cllora run --engine flower-sim`): Flower's simulation
    engine, one virtual SuperNode per client.
  * `flwr run APP_DIR` against a SuperLink with SuperNodes (`cllora flower-app DIR` writes the
    app directory); the ServerApp then reads its settings from Flower's run config.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp

from cllora import flower_timing as timing
from cllora.config import RunConfig, check_keys, load_config, load_toml, parse_class_edges
from cllora.errors import RunFailed, UserError
from cllora.metrics import pooled_standard_errors
from cllora.flower_client import client_app, tensors_of  # client_app: also the app of older app dirs

if TYPE_CHECKING:  # torch, transformers and peft load only where they are used
    from cllora.experiment import ClientUpdate, Experiment

CONNECT_TIMEOUT = 300.0  # seconds the server waits for every SuperNode to connect
PULL_INTERVAL = 0.2  # seconds between the server's pulls for replies (Flower's send_and_receive: 3)
DEFAULT_MAX_CLIENT_EXAMPLES = 10_000  # FedAvg weight cap of a client with its own texts
APP_ENV = {"FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1"}  # never reinstall torch per run


# ---------------------------------------------------------------- messages

def _request(state: dict, config_json: str, round_num: int, evaluate: bool, node_id: int,
             message_type: str, downlink: dict | None = None, base: dict | None = None) -> Message:
    content = RecordDict({"adapter": ArrayRecord(state),
                          "config": ConfigRecord({"run": config_json, "round": round_num,
                                                  "evaluate": evaluate})})
    if downlink:  # the strategy's tensors beside the adapter (SCAFFOLD: the server's c)
        content["downlink"] = ArrayRecord(downlink)
    if base:  # FLoRA / FedEx-LoRA: the running total merged into the base weights so far
        content["base"] = ArrayRecord(base)
    return Message(content, dst_node_id=node_id, message_type=message_type, group_id=str(round_num))


def _replies(grid: Grid, messages: list[Message], keys: list, timeout: float | None,
             arrived: dict | None = None) -> dict:
    """Push messages, pull their replies every PULL_INTERVAL until all are in or `timeout` passed;
    the replies by the key of the message each answers (and, into `arrived`, when each came).
    Matched on the reply's reply-to id: the SuperLink itself answers for a node that went away."""
    pushed = set(grid.push_messages(messages))
    sent = {m.metadata.message_id: key for m, key in zip(messages, keys)}
    waiting = set(sent) & pushed  # a message that could not be pushed gets no reply
    deadline = None if timeout is None else time.monotonic() + timeout
    replies = {}
    while waiting:
        for reply in grid.pull_messages(list(waiting)):
            answered = reply.metadata.reply_to_message_id
            if answered in waiting:
                waiting.discard(answered)
                replies[sent[answered]] = reply
                if arrived is not None:
                    arrived[sent[answered]] = time.time()
        if not waiting or (deadline is not None and time.monotonic() >= deadline):
            break
        time.sleep(PULL_INTERVAL)
    return replies


# ---------------------------------------------------------------- the server's view of the clients

class FlowerClients:
    """The run's clients as Flower SuperNodes, reached through a Grid (`engine.Clients`)."""

    def __init__(self, grid: Grid, exp: "Experiment", log: Callable[[str], None] = print,
                 connect_timeout: float = CONNECT_TIMEOUT,
                 max_client_examples: int = DEFAULT_MAX_CLIENT_EXAMPLES, timings: Path | None = None):
        self.grid, self.log, self.max_client_examples = grid, log, max_client_examples
        self.exp = exp  # its base_total: what FLoRA / FedEx-LoRA merged into the server's base
        self.config: RunConfig = exp.config
        self.config_json = json.dumps(self.config.to_dict(), sort_keys=True)
        self.timeout = self.config.round_timeout
        self.partition_sizes = [len(rows) for rows in exp.data.client_train]  # what each must claim
        self.own_data: set[int] = set()  # clients with their own texts (sizes unknown here)
        self.nodes = self._discover(connect_timeout)  # partition id -> node id
        self.silent: set[int] = set()  # clients that did not answer this round's training
        self.round = 0
        self.timings, self.messages = timings, []  # flower_messages.csv and its rows
        if timings is not None and timings.is_file():  # a resumed run keeps its earlier rows
            from cllora.records import read_csv

            self.messages = read_csv(timings)

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
            if int(reply.content["metrics"].get("own-data", 0)):
                self.own_data.add(pid)
        missing = sorted(set(range(need)) - set(nodes))
        if missing:
            raise RunFailed(f"no SuperNode holds partition-id {', '.join(map(str, missing))}")
        self.log(f"flower: {need} SuperNodes, partition → node {nodes}")
        return nodes

    def _exchange(self, message_type: str, state: dict, client_ids: list[int], round_num: int,
                  evaluate: bool, downlink: dict | None = None) -> dict[int, Message]:
        """Send `state` to the clients' nodes; their replies by client id (missing = no reply)."""
        messages = [_request(state, self.config_json, round_num, evaluate, self.nodes[cid], message_type,
                             downlink, self.exp.base_total) for cid in client_ids]
        sent, arrived = time.time(), {}
        replies = _replies(self.grid, messages, client_ids, self.timeout, arrived)
        self._record_timings(message_type, replies, sent, arrived)
        return replies

    def _record_timings(self, kind: str, replies: dict[int, Message], sent: float, arrived: dict) -> None:
        """Each reply's breakdown (cllora.flower_timing) into flower_messages.csv."""
        if self.timings is None:
            return
        from cllora.records import write_csv

        for cid, reply in sorted(replies.items()):
            metrics = {} if reply.has_error() else reply.content.get("metrics", {})
            row = timing.message_row(self.round, kind, cid, sent, arrived[cid], metrics)
            if row is not None:
                self.messages.append(row)
        write_csv(self.timings, timing.COLUMNS, self.messages)

    @property
    def _within(self) -> str:
        return "" if self.timeout is None else f" within {self.timeout:g} s"

    def fit(self, global_state, client_ids, round_num, evaluate, downlink=None, own_states=None):
        """Train on the clients' nodes. The strategy's downlink goes with the adapter; each client
        keeps its own strategy state in its node's Context.state (so `own_states` stays unused,
        and a resumed `flwr run`, a new Flower run, starts the clients' states afresh)."""
        self.round = round_num
        replies = self._exchange(MessageType.TRAIN, global_state, client_ids, round_num, evaluate, downlink)
        self.silent = {cid for cid in client_ids if cid not in replies}
        return [self._update(cid, replies.get(cid)) for cid in client_ids]

    def _update(self, cid: int, reply: Message | None) -> "ClientUpdate":
        from cllora.experiment import ClientUpdate
        from cllora.train import TrainResult

        nothing = TrainResult(float("nan"), 0, 0, 0.0)
        if reply is None:
            return ClientUpdate(cid, None, 0, nothing, error=f"no reply from node {self.nodes[cid]}"
                                                             + self._within)
        if reply.has_error():
            return ClientUpdate(cid, None, 0, nothing, error=f"client error: {reply.error.reason}"[:300])
        try:
            m = reply.content["metrics"]
            state = tensors_of(reply.content, "adapter")
            result = TrainResult(float(m["train-loss"]), int(m["steps"]), int(m["tokens"]),
                                 float(m["train-seconds"]))
            update = ClientUpdate(cid, state, int(m["num-examples"]), result, m.get("own-test-loss"),
                                  own_test_se=m.get("own-test-se"),
                                  extra=tensors_of(reply.content, "extra") or {})
        except (KeyError, TypeError, ValueError) as exc:
            return ClientUpdate(cid, None, 0, nothing, error=f"malformed reply: {exc!r}"[:300])
        update.error = self._weight_check(update)
        return update

    def _weight_check(self, update: "ClientUpdate") -> str | None:
        """Why a client's claimed example count (its FedAvg weight) is refused; a client with its
        own texts, whose size the server cannot know, is capped at max_client_examples instead."""
        cid, claimed = update.client_id, update.num_train_examples
        if claimed <= 0:
            return f"reported {claimed} training examples"
        if cid not in self.own_data:
            size = self.partition_sizes[cid]
            return None if claimed == size else f"claims {claimed} training examples; its partition has {size}"
        if claimed > self.max_client_examples:
            self.log(f"flower: client {cid} (own texts) claims {claimed} training examples; "
                     f"its weight is capped at {self.max_client_examples} (run-config max-client-examples)")
            update.num_train_examples = self.max_client_examples
        return None

    def test_losses(self, global_state) -> tuple[np.ndarray, np.ndarray]:
        """Every client's loss on its own split and its standard error, pooled from the spreads
        the clients report (`metrics.split_spread`). Every client but those silent this round is
        asked (they would only cost another timeout); NaN for a client whose reply is missing,
        an error or malformed, with the reason logged."""
        ids = sorted(set(self.nodes) - self.silent)
        replies = self._exchange(MessageType.EVALUATE, global_state, ids, -1, True)
        losses = np.full(self.config.clients, np.nan)
        spreads: list = [None] * self.config.clients
        why = {cid: "not asked: no training reply" for cid in self.silent}
        for cid in ids:
            reply = replies.get(cid)
            try:
                if reply is None:
                    why[cid] = "no reply" + self._within
                elif reply.has_error():
                    why[cid] = f"client error: {reply.error.reason}"[:200]
                else:
                    m = reply.content["metrics"]
                    losses[cid] = float(m["test-loss"])
                    spreads[cid] = (float(m["test-se2"]), float(m["test-resid-ss"]), int(m["test-texts"]),
                                    float(m["test-sum-w2"]))
            except (KeyError, TypeError, ValueError) as exc:
                losses[cid] = np.nan
                why[cid] = f"malformed reply: {exc!r}"[:200]
        lost = [cid for cid in sorted(self.nodes) if not math.isfinite(losses[cid])]
        if lost:
            self.log("flower: no local test loss from " + "; ".join(
                f"client {cid} ({why.get(cid, 'not finite')})" for cid in lost))
        return losses, pooled_standard_errors(spreads)


# ---------------------------------------------------------------- the ServerApp

class ServerSettings(NamedTuple):
    """What the ServerApp reads from Flower's run config."""

    config: RunConfig
    out: Path
    resume: bool = False
    overwrite: bool = False
    max_client_examples: int = DEFAULT_MAX_CLIENT_EXAMPLES


def _serve(grid: Grid, settings: ServerSettings, log: Callable[[str], None], progress=None,
           timings: bool = False) -> dict:
    """The run on `grid`; with `timings`, each message's breakdown goes to flower_messages.csv."""
    from cllora.engine import run_experiment

    def clients(exp, _progress):
        path = settings.out / timing.FILE if timings else None
        if path is not None and not settings.resume:
            path.unlink(missing_ok=True)  # an overwritten run's rows go with it
        return FlowerClients(grid, exp, log, max_client_examples=settings.max_client_examples,
                             timings=path)

    return run_experiment(settings.config, settings.out, resume=settings.resume,
                          overwrite=settings.overwrite, log=log, progress=progress, clients=clients)


def settings_from_run_config(run_config: dict[str, Any]) -> ServerSettings:
    """The settings from Flower's run config: `config-file` (a cllora TOML), `out`, `resume`,
    `overwrite`, `max-client-examples`, and any RunConfig key (kebab- or snake-case) as an override."""
    values = {k.replace("-", "_"): v for k, v in run_config.items()}
    config_file = values.pop("config_file", "") or None
    out = Path(values.pop("out", "") or "runs/flower")
    resume, overwrite = bool(values.pop("resume", False)), bool(values.pop("overwrite", False))
    cap = values.pop("max_client_examples", DEFAULT_MAX_CLIENT_EXAMPLES)
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
        raise UserError(f"run-config max-client-examples must be a whole number ≥ 1, got {cap!r}")
    check_keys(values, "run-config (besides config-file, out, resume, overwrite, max-client-examples)")
    if isinstance(values.get("class_edges"), str):  # run configs hold no lists: "10,20,40,80"
        values["class_edges"] = parse_class_edges(values["class_edges"], "run-config class-edges")
    return ServerSettings(load_config(config_file, **values), out, resume, overwrite, cap)


server_app = ServerApp()


@server_app.main()
def _main(grid: Grid, context: Context) -> None:
    """`flwr run`: settings from the run config; results (and flower_messages.csv) into `out`."""
    settings = settings_from_run_config(dict(context.run_config))
    summary = _serve(grid, settings, print, timings=True)
    print(f"cllora: run finished, final test loss {summary['final_test_loss']:.4f}; results: {settings.out}")


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
clientapp = "cllora.flower_client:client_app"

[tool.flwr.app.config]
config-file = {config_file}
out = {out}
resume = false
overwrite = false
# FedAvg weight cap of a SuperNode with its own texts (data-path): the server cannot check their number
max-client-examples = {max_client_examples}
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
        max_client_examples=DEFAULT_MAX_CLIENT_EXAMPLES,
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
        outcome["summary"] = _serve(grid, ServerSettings(config, Path(out), resume, overwrite), log, progress)

    gpu = config.device != "cpu" and _cuda_available()
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


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
