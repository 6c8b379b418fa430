"""Secure aggregation through Flower's own SecAgg+ (cllora.flower.secure): the server's secure mean
equals the plain weighted mean within the stated quantisation bound; a client that drops out
mid-round leaves the round complete while enough shares survive, and halts it when they do not.

The protocol runs for real (Flower's SecAggPlusWorkflow on the server, secaggplus_mod on each
client) over an in-memory grid that hands each message to its node's ClientApp stack at once."""

from __future__ import annotations

import copy

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import Context, Error, Message, RecordDict  # noqa: E402
from flwr.client.mod import secaggplus_mod  # noqa: E402
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters  # noqa: E402
from flwr.compat.common import recorddict_compat as compat  # noqa: E402

from cllora.flower.secure import payload_nbytes, secure_round  # noqa: E402
from cllora.privacy import secagg  # noqa: E402



@pytest.fixture(autouse=True)
def task_identity(monkeypatch):
    """Flower's Message needs the identity of the task that builds it (set by Flower in a real run)."""
    from flwr.supercore.task_identity import TaskIdentity

    for name in ("_run_id", "_node_id", "_task_id"):
        monkeypatch.setattr(TaskIdentity, name, 1)


class FakeGrid:
    """Nodes answering at once: node -> its arrays and weight; `drop` = (node, stage) pairs
    where that node's ClientApp fails (an error reply, as Flower sends for a crashed ClientApp)."""

    def __init__(self, arrays: dict[int, list[np.ndarray]], weights: dict[int, int], drop=()):
        self.arrays, self.weights, self.drop = arrays, weights, set(drop)
        self.contexts = {node: Context(run_id=0, node_id=node, node_config={}, state=RecordDict(),
                                       run_config={}) for node in arrays}

    def _train(self, msg: Message, context: Context) -> Message:
        node = msg.metadata.dst_node_id
        fitres = FitRes(Status(Code.OK, ""), ndarrays_to_parameters(self.arrays[node]), self.weights[node],
                        {"train-loss": 1.0})
        return Message(compat.fitres_to_recorddict(fitres, True), reply_to=msg)

    def send_and_receive(self, messages, timeout=None):
        replies = []
        for msg in messages:
            node = msg.metadata.dst_node_id
            stage = msg.content.config_records["secaggplus_configs"]["stage"]
            if (node, stage) in self.drop:
                replies.append(Message(Error(code=0, reason="dropped"), reply_to=msg))
                continue
            reply = secaggplus_mod(copy.deepcopy(msg), self.contexts[node], self._train)  # each its own copy
            reply.metadata.__dict__["_src_node_id"] = node  # what the SuperLink fills in
            replies.append(reply)
        return replies


def _random_clients(n: int, seed: int = 0, scale: float = 0.05):
    rng = np.random.default_rng(seed)
    arrays = {node: [rng.normal(0, scale, (8, 16)).astype(np.float32), rng.normal(0, scale, (16, 8))
                     .astype(np.float32)] for node in range(101, 101 + n)}
    weights = {node: int(w) for node, w in zip(arrays, rng.integers(5, 40, n))}
    return arrays, weights


def _plain_mean(arrays, weights, nodes):
    total = sum(weights[n] for n in nodes)
    return [sum(weights[n] * arrays[n][i].astype(np.float64) for n in nodes) / total for i in range(2)]


def _run(grid: FakeGrid, shares: int, threshold: int):
    config = {"round": 1}
    return secure_round(grid, {node: (a, config) for node, a in grid.arrays.items()}, 1, shares, threshold,
                        max(grid.weights.values()), timeout=None)


@pytest.mark.parametrize("n", [2, 5])
def test_the_secure_mean_equals_the_plain_weighted_mean_within_the_bound(n):
    arrays, weights = _random_clients(n)
    shares, threshold = secagg.protocol(n, None, None)
    result = _run(FakeGrid(arrays, weights), shares, threshold)
    assert sorted(result.contributed) == sorted(arrays)
    assert {node: w for node, (w, _) in result.contributed.items()} == weights  # in the clear
    bound = secagg.mean_error_bound(list(weights.values()), max(weights.values()))
    assert bound < 2e-5  # LoRA-sized entries at Flower's default 2^22 levels over [-8, 8]
    plain = _plain_mean(arrays, weights, arrays)
    errors = [np.abs(s - p).max() for s, p in zip(result.mean, plain)]
    assert max(errors) <= bound
    assert max(errors) > 0  # it is quantised: not the plain mean to the bit
    assert result.bytes_up > sum(a.nbytes for node in arrays for a in arrays[node])  # masked vectors + keys


def test_the_bound_is_tight_enough_to_catch_a_wrong_weighting():
    arrays, weights = _random_clients(5, seed=1)
    result = _run(FakeGrid(arrays, weights), *secagg.protocol(5, None, None))
    unweighted = [np.mean([arrays[n][i] for n in arrays], axis=0) for i in range(2)]
    bound = secagg.mean_error_bound(list(weights.values()), max(weights.values()))
    assert max(np.abs(s - u).max() for s, u in zip(result.mean, unweighted)) > 100 * bound


def test_a_client_dropping_mid_round_above_the_threshold_leaves_the_others_mean():
    arrays, weights = _random_clients(5, seed=2)
    dropped = 103
    result = _run(FakeGrid(arrays, weights, drop={(dropped, "collect_masked_vectors")}), 5, 3)
    survivors = [n for n in arrays if n != dropped]
    assert sorted(result.contributed) == survivors
    bound = secagg.mean_error_bound([weights[n] for n in survivors], max(weights.values()))
    plain = _plain_mean(arrays, weights, survivors)
    assert max(np.abs(s - p).max() for s, p in zip(result.mean, plain)) <= bound


def test_a_client_dropping_after_sending_its_masked_vector_still_counts():
    arrays, weights = _random_clients(5, seed=3)
    result = _run(FakeGrid(arrays, weights, drop={(104, "unmask")}), 5, 3)
    assert sorted(result.contributed) == sorted(arrays)  # its vector is in; the others unmask it
    plain = _plain_mean(arrays, weights, arrays)
    bound = secagg.mean_error_bound(list(weights.values()), max(weights.values()))
    assert max(np.abs(s - p).max() for s, p in zip(result.mean, plain)) <= bound


@pytest.mark.parametrize("stage", ["share_keys", "collect_masked_vectors"])
def test_dropouts_below_the_threshold_halt_the_round_with_no_mean(stage):
    arrays, weights = _random_clients(5, seed=4)
    grid = FakeGrid(arrays, weights, drop={(102, stage), (103, stage), (104, stage)})
    result = _run(grid, 5, 3)  # two live clients left; every client needs 3 live neighbours
    assert result.mean is None
    assert result.failures and "threshold" in result.failures[0]


def test_with_two_clients_either_dropping_halts_the_round():
    arrays, weights = _random_clients(2, seed=5)
    result = _run(FakeGrid(arrays, weights, drop={(101, "collect_masked_vectors")}), 2, 2)
    assert result.mean is None  # one survivor's "sum" would be its own update


def test_protocol_defaults_and_bad_settings():
    assert secagg.protocol(2, None, None) == (2, 2)
    assert secagg.protocol(5, None, None) == (5, 3)
    assert secagg.protocol(10, 5, None) == (5, 3)
    for k, shares, threshold, match in [(1, None, None, "at least 2"), (5, 4, None, "odd"),
                                        (5, 6, None, r"secagg_shares must be an integer in \[3, 5\]"),
                                        (5, 5, 1, r"secagg_threshold must be an integer in \[2, 5\]"),
                                        (9, 5, 5, r"secagg_threshold must be an integer in \[2, 4\]")]:
        with pytest.raises(ValueError, match=match):
            secagg.protocol(k, shares, threshold)


def test_payload_bytes_count_arrays_bytes_and_numbers():
    content = compat.fitres_to_recorddict(FitRes(Status(Code.OK, ""), ndarrays_to_parameters(
        [np.zeros((4, 4), np.float32)]), 3, {"x": 1.0}), True)
    assert payload_nbytes(content) >= 64
