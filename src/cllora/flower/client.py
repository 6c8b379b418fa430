"""The ClientApp: what a SuperNode runs for each train, evaluate or query message.

A SuperNode's node config names its partition (`partition-id`, `num-partitions`) or its own texts
(`data-path`, a real client with its own corpus), and its torch thread budget (`num-threads`).
Training is `cllora.engine.client.client_update` on that data, with the random streams of the partition
id. Real SuperNodes start a fresh process for every message, so this module imports only flwr
and the config at the top: a `query` stays cheap, and torch, transformers and peft load in a
train or evaluate message. Each reply says where its time went (`cllora.flower.timing`).
"""

from __future__ import annotations

import json
import math
import time
from typing import TYPE_CHECKING, Callable, NamedTuple

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.client.mod import secaggplus_mod
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.compat.common import recorddict_compat as compat

from cllora.config.settings import from_dict
from cllora.engine.runtime import build_runtime
from cllora.errors import UserError
from cllora.flower import timing

if TYPE_CHECKING:
    from cllora.engine.experiment import Experiment


def _quiet(message: str) -> None:
    """A ClientApp has no console of its own."""


def _reply(msg: Message, metrics: dict[str, float], arrays: dict[str, dict] | None = None) -> Message:
    """A reply with metrics and tensor records (`adapter`, the strategy's `extra`), empty ones left out."""
    content = RecordDict({"metrics": MetricRecord(metrics)})
    for name, tensors in (arrays or {}).items():
        if tensors:
            content[name] = ArrayRecord(tensors)
    return Message(content, reply_to=msg)


def tensors_of(records: RecordDict, name: str) -> dict | None:
    """The tensors of an ArrayRecord in a message or a context's state (None when absent)."""
    return records[name].to_torch_state_dict() if name in records else None


class ClientSide(NamedTuple):
    """This SuperNode's prepared experiment and who it is in it."""

    exp: "Experiment"
    pid: int  # partition id (names the client and its random streams)
    row: int  # its row in exp.data (0 for a client with its own texts: the only one there)
    seconds: dict[str, float]  # what preparing cost this message (0 when it was ready)


_CLIENT_CACHE: dict[str, "Experiment"] = {}  # one prepared experiment per process
OWN_STATE = "own-state"  # the client's strategy state (SCAFFOLD's c_i, FedSA's B) in Context.state


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


def thread_budget(node_config: dict) -> int:
    """Set torch's threads to the node config's `num-threads` (default: torch's own, all cores
    or what the launcher set in OMP_NUM_THREADS, as Ray does); the number in use."""
    import torch

    if "num-threads" in node_config:
        threads = int(node_config["num-threads"])
        if threads < 1:
            raise UserError(f"node config num-threads={threads}; give 1 or more")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def client_experiment(config_json: str, node_config: dict) -> ClientSide:
    """This node's experiment, prepared once per process and run config: where the process lives
    on (Flower's simulation workers), the model stays loaded between messages."""
    from cllora.engine.experiment import prepare_data, prepare_experiment, prepare_own_data  # lazy: torch

    config = from_dict(json.loads(config_json))
    pid, data_path = node_identity(node_config, config.clients)
    key = f"{config_json}|{data_path}"
    seconds = {"load-seconds": 0.0, "data-seconds": 0.0}
    if key not in _CLIENT_CACHE:
        _CLIENT_CACHE.clear()
        start = time.perf_counter()
        runtime = build_runtime(config, load_model=False, log=_quiet)  # device, precision, tokenizer
        data_start = time.perf_counter()
        data = (prepare_own_data(config, runtime.tokenizer, data_path) if data_path
                else prepare_data(config, runtime.tokenizer, _quiet))
        data_end = time.perf_counter()
        _CLIENT_CACHE[key] = prepare_experiment(config, runtime.load_base(config, _quiet), runtime.tokenizer,
                                                runtime.device, runtime.precision, data, _quiet)
        seconds = {"load-seconds": time.perf_counter() - data_end + data_start - start,
                   "data-seconds": data_end - data_start}
    return ClientSide(_CLIENT_CACHE[key], pid, 0 if data_path else pid, seconds)


def _run_json(msg: Message) -> str:
    """The run's config (JSON) a train or evaluate message carries, plain or as legacy FitIns."""
    return str((msg.content["config"] if "config" in msg.content else msg.content["fitins.config"])["run"])


def _handle(msg: Message, context: Context, work: Callable, reply: Callable = _reply) -> Message:
    """A train or evaluate message: imports, threads, the prepared experiment, then
    `work(side, msg, context) -> (metrics, tensor records)`; the reply carries them and where
    this message's time went (cllora.flower.timing)."""
    entered, age = time.time(), timing.process_age()
    imports = timing.heavy_imports()
    threads = thread_budget(dict(context.node_config))
    side = client_experiment(_run_json(msg), dict(context.node_config))
    if "base" in msg.content:  # FLoRA / FedEx-LoRA: the server's merges, onto this node's base
        from cllora.engine.experiment import merge_into_base  # lazy: torch

        merge_into_base(side.exp, tensors_of(msg.content, "base"))
    start = time.perf_counter()
    metrics, arrays = work(side, msg, context)
    metrics.update({"partition-id": side.pid, "threads": threads, "import-seconds": imports,
                    **side.seconds, "compute-seconds": time.perf_counter() - start,
                    "t-process-start": entered - age, "t-entry": entered, "t-exit": time.time()})
    return reply(msg, metrics, arrays)


client_app = ClientApp()


@client_app.query()
def _query(msg: Message, context: Context) -> Message:
    """Which partition this SuperNode holds (the server maps partitions to nodes with it)."""
    clients = int(msg.content["config"]["clients"])
    pid, data_path = node_identity(dict(context.node_config), clients)
    return _reply(msg, {"partition-id": pid, "own-data": int(bool(data_path))})


def _train_work(side: ClientSide, msg: Message, context: Context) -> tuple[dict, dict]:
    """Local training the way the run's strategy says: its downlink from the message, this
    client's own strategy state from the node's context (kept there for its next round)."""
    from cllora.engine.client import client_update  # lazy: torch, transformers

    cfg = msg.content["config"]
    update = client_update(side.exp, tensors_of(msg.content, "adapter"), side.row, int(cfg["round"]),
                           evaluate_own_split=bool(cfg["evaluate"]), stream_id=side.pid,
                           downlink=tensors_of(msg.content, "downlink"),
                           own_state=tensors_of(context.state, OWN_STATE))
    if update.client_state:
        context.state[OWN_STATE] = ArrayRecord(update.client_state)
    return _train_metrics(update), {"adapter": update.state, "extra": update.extra}


def _train_metrics(update) -> dict:
    r = update.result
    metrics = {"num-examples": update.num_train_examples, "train-loss": r.train_loss, "steps": r.steps,
               "tokens": r.tokens, "train-seconds": r.seconds}
    if update.own_test_loss is not None:
        metrics["own-test-loss"] = update.own_test_loss
    if update.own_test_se is not None and math.isfinite(update.own_test_se):
        metrics["own-test-se"] = update.own_test_se
    return metrics


def _evaluate_work(side: ClientSide, msg: Message, context: Context) -> tuple[dict, dict]:
    from cllora.engine.evaluation import score_own  # lazy: torch, transformers

    loss, (se2, resid, texts, h_sum, h_den) = score_own(side.exp, tensors_of(msg.content, "adapter"), side.row)
    return {"test-loss": loss, "test-se2": se2, "test-resid": resid, "test-texts": texts,
            "test-h-sum": h_sum, "test-h-den": h_den}, {}


@client_app.train()
def _train(msg: Message, context: Context) -> Message:
    """E local epochs from the server's adapter; reply with the local adapter and its numbers."""
    return _handle(msg, context, _train_work)


@client_app.evaluate()
def _evaluate(msg: Message, context: Context) -> Message:
    """The server's adapter on this client's own local test split."""
    return _handle(msg, context, _evaluate_work)


# ---------------------------------------------------------------- secure aggregation (SecAgg+)

def _secure_train_work(side: ClientSide, msg: Message, context: Context) -> tuple[dict, dict]:
    """Local training from a legacy FitIns (SecAgg+'s masked-vector stage): the adapter as
    Parameters in `adapter_order`; the example count, the client's weight, capped at the round's
    `max-weight` (the protocol's quantisation assumes it)."""
    import torch  # lazy: a query stays cheap

    from cllora.engine.client import client_update  # lazy: torch, transformers
    from cllora.flower.secure import adapter_order  # lazy: flwr's server side

    fitins = compat.recorddict_to_fitins(msg.content, keep_input=True)
    names = adapter_order(side.exp.initial_state)
    arrays = parameters_to_ndarrays(fitins.parameters)
    state = {name: torch.from_numpy(array.copy()) for name, array in zip(names, arrays, strict=True)}
    cfg = fitins.config
    update = client_update(side.exp, state, side.row, int(cfg["round"]), evaluate_own_split=bool(cfg["evaluate"]),
                           stream_id=side.pid)
    metrics = _train_metrics(update)
    metrics["num-examples"] = min(int(metrics["num-examples"]), int(cfg["max-weight"]))
    return metrics, {"adapter": {name: update.state[name] for name in names}}


def _legacy_reply(msg: Message, metrics: dict, arrays: dict) -> Message:
    """The train reply as a legacy FitRes, the form `secaggplus_mod` masks (it then clears the
    arrays and passes the metrics on in the clear)."""
    adapter = arrays["adapter"]
    parameters = ndarrays_to_parameters([tensor.detach().cpu().numpy() for tensor in adapter.values()])
    fitres = FitRes(Status(Code.OK, "trained"), parameters, int(metrics["num-examples"]), metrics)
    return Message(compat.fitres_to_recorddict(fitres, keep_input=True), reply_to=msg)


def _secure_train(msg: Message, context: Context) -> Message:
    """One SecAgg+ stage: `secaggplus_mod` answers the key stages itself and calls this only in
    the masked-vector stage."""
    return _handle(msg, context, _secure_train_work, _legacy_reply)


def secure_app(*outer_mods) -> ClientApp:
    """A ClientApp that trains only inside Flower's SecAgg+ protocol (`secaggplus_mod`); a plain
    train message is refused by the mod. `outer_mods` run before it (tests drop clients with one)."""
    app = ClientApp(mods=[*outer_mods, secaggplus_mod])
    app.train()(_secure_train)
    app.evaluate()(_evaluate)
    app.query()(_query)
    return app


secure_client_app = secure_app()  # what `cllora flower-app --secagg` names as the app's ClientApp
