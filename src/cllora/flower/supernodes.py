"""The engine's clients over Flower: `FlowerClients` sends each sampled client's training request
and each evaluation as a Flower message (Message API) to its SuperNode, pulls the replies every
PULL_INTERVAL seconds (Flower's `send_and_receive` sleeps 3 s), and checks what a client claims as
its FedAvg weight: a partition client must report its partition's size (the server prepares the
same data); a client with its own texts weighs at most `max_client_examples`.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from cllora.errors import MESSAGE_CHARS, RunFailed
from cllora.flower import timing
from cllora.flower.client import tensors_of
from cllora.flower.secure import adapter_order, secure_round
from cllora.metrics import pooled_standard_errors
from cllora.privacy import secagg
from cllora.records import read_csv, write_csv

if TYPE_CHECKING:  # torch, transformers and peft load only where they are used
    from cllora.config.settings import RunConfig
    from cllora.engine.client import ClientUpdate
    from cllora.engine.experiment import Experiment

CONNECT_TIMEOUT = 300.0  # seconds the server waits for every SuperNode to connect
PULL_INTERVAL = 0.2  # seconds between the server's pulls for replies (Flower's send_and_receive: 3)
DEFAULT_MAX_CLIENT_EXAMPLES = 10_000  # FedAvg weight cap of a client with its own texts


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
        """Each reply's breakdown (cllora.flower.timing) into flower_messages.csv."""
        if self.timings is None:
            return

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

    def secure_fit(self, global_state, client_ids, round_num, evaluate):
        """Train on the clients' nodes inside Flower's SecAgg+ (cllora.flower.secure): the server
        gets the weighted mean of their adapters, each one's clear numbers and who dropped out
        (`cllora.engine.secure_round.SecureSum`). Each client weighs at most the largest weight
        the server allows this round (its partition's size; max_client_examples for own texts)."""
        import torch  # lazy: the query path stays light

        from cllora.engine.secure_round import SecureSum  # lazy: torch

        self.round = round_num
        names = adapter_order(global_state)
        arrays = [global_state[name].detach().cpu().numpy() for name in names]
        max_weight = max(self.max_client_examples if c in self.own_data else self.partition_sizes[c]
                         for c in client_ids)
        config = {"run": self.config_json, "round": round_num, "evaluate": evaluate, "max-weight": max_weight}
        shares, threshold = secagg.protocol(len(client_ids), self.config.secagg_shares,
                                            self.config.secagg_threshold)
        result = secure_round(self.grid, {self.nodes[c]: (arrays, config) for c in client_ids}, round_num,
                              shares, threshold, max_weight, self.timeout)
        updates = [self._secure_update(cid, result.contributed.get(self.nodes[cid])) for cid in client_ids]
        self.silent = {u.client_id for u in updates if u.error}
        refused = [f"client {u.client_id} {u.error}" for u in updates if u.error and u.num_train_examples]
        mean = None if result.mean is None else {
            name: torch.as_tensor(array, dtype=global_state[name].dtype).reshape(global_state[name].shape)
            for name, array in zip(names, result.mean, strict=True)}
        return SecureSum(mean, updates, secagg.mean_error_bound(
                             [u.num_train_examples for u in updates if not u.error], max_weight),
                         result.bytes_up, result.bytes_down,
                         "; ".join(result.failures + refused) or None,
                         {"shares": shares, "threshold": threshold, "max_weight": max_weight})

    def _secure_update(self, cid: int, got: tuple[int, dict] | None) -> "ClientUpdate":
        """A contributor's clear numbers as a ClientUpdate whose adapter the server never sees
        (`state` {}); a client whose claimed weight is refused has its masked update in the sum
        already, so its refusal fails the round (num_train_examples kept to tell it apart)."""
        from cllora.engine.client import ClientUpdate  # lazy: torch
        from cllora.train import TrainResult  # lazy: torch

        if got is None:
            return ClientUpdate(cid, None, 0, TrainResult(float("nan"), 0, 0, 0.0),
                                error="dropped out of the SecAgg+ round" + self._within)
        examples, m = got
        try:
            update = ClientUpdate(cid, {}, examples, TrainResult(float(m["train-loss"]), int(m["steps"]),
                                                                 int(m["tokens"]), float(m["train-seconds"])),
                                  m.get("own-test-loss"), own_test_se=m.get("own-test-se"))
        except (KeyError, TypeError, ValueError) as exc:
            return ClientUpdate(cid, None, examples, TrainResult(float("nan"), 0, 0, 0.0),
                                error=f"malformed metrics: {exc!r}"[:MESSAGE_CHARS])
        update.error = self._weight_check(update)
        return update

    def _update(self, cid: int, reply: Message | None) -> "ClientUpdate":
        from cllora.engine.client import ClientUpdate  # lazy: torch
        from cllora.train import TrainResult  # lazy: torch

        nothing = TrainResult(float("nan"), 0, 0, 0.0)
        if reply is None:
            return ClientUpdate(cid, None, 0, nothing, error=f"no reply from node {self.nodes[cid]}"
                                                             + self._within)
        if reply.has_error():
            return ClientUpdate(cid, None, 0, nothing, error=f"client error: {reply.error.reason}"[:MESSAGE_CHARS])
        try:
            m = reply.content["metrics"]
            state = tensors_of(reply.content, "adapter")
            result = TrainResult(float(m["train-loss"]), int(m["steps"]), int(m["tokens"]),
                                 float(m["train-seconds"]))
            update = ClientUpdate(cid, state, int(m["num-examples"]), result, m.get("own-test-loss"),
                                  own_test_se=m.get("own-test-se"),
                                  extra=tensors_of(reply.content, "extra") or {})
        except (KeyError, TypeError, ValueError) as exc:
            return ClientUpdate(cid, None, 0, nothing, error=f"malformed reply: {exc!r}"[:MESSAGE_CHARS])
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
                    why[cid] = f"client error: {reply.error.reason}"[:MESSAGE_CHARS]
                else:
                    m = reply.content["metrics"]
                    losses[cid] = float(m["test-loss"])
                    spreads[cid] = (float(m["test-se2"]), float(m["test-resid"]), int(m["test-texts"]),
                                    float(m["test-h-sum"]), float(m["test-h-den"]))
            except (KeyError, TypeError, ValueError) as exc:
                losses[cid] = np.nan
                why[cid] = f"malformed reply: {exc!r}"[:MESSAGE_CHARS]
        lost = [cid for cid in sorted(self.nodes) if not math.isfinite(losses[cid])]
        if lost:
            self.log("flower: no local test loss from " + "; ".join(
                f"client {cid} ({why.get(cid, 'not finite')})" for cid in lost))
        return losses, pooled_standard_errors(spreads)


# ---------------------------------------------------------------- the ServerApp
