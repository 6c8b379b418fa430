"""Secure aggregation on the server: one round of Flower's own SecAgg+ (`SecAggPlusWorkflow`) over
cllora's sampled clients, and what the server learns from it (the weighted mean of their adapters,
each client's clear-text metrics, who dropped out). No cryptography is written here.

The workflow runs on a `LegacyContext` whose legacy Strategy hands it cllora's own sample
(`configure_fit`) and takes the securely summed mean (`aggregate_fit`). The adapter travels as legacy
Parameters in one fixed order (its names sorted); the ClientApp's train reply is a legacy FitRes
(`cllora.flower.client`). Flower's `secaggplus_mod` clears the reply's arrays and passes its metrics
in the clear: the server sees each client's example count, training loss and own-split loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from flwr.app import ConfigRecord, Context, RecordDict
from flwr.common import FitIns, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.compat.common import recorddict_compat as compat
from flwr.server.compat.grid_client_proxy import GridClientProxy
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.strategy import FedAvg
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
from flwr.server.workflow.constant import Key as WorkflowKey

from cllora.privacy import secagg


def adapter_order(state: dict) -> list[str]:
    """The order both sides put the adapter's tensors in as legacy Parameters."""
    return sorted(state)


@dataclass
class SecureResult:
    """What one SecAgg+ round gave the server."""

    mean: list[np.ndarray] | None  # weighted mean of the contributors' arrays (None: the round halted)
    contributed: dict[int, tuple[int, dict]] = field(default_factory=dict)  # node -> (examples, metrics)
    failures: list[str] = field(default_factory=list)  # the protocol's errors, as text
    bytes_down: int = 0  # payload bytes the server sent in the round's four stages
    bytes_up: int = 0  # and received


class _SampledStrategy(FedAvg):
    """The legacy Strategy the workflow asks: cllora's sample in, the secure mean out."""

    def __init__(self, grid, instructions: dict[int, FitIns], result: SecureResult):
        super().__init__()
        self.grid, self.instructions, self.result = grid, instructions, result

    def configure_fit(self, server_round, parameters, client_manager):
        return [(GridClientProxy(node, self.grid, 0), fitins) for node, fitins in self.instructions.items()]

    def aggregate_fit(self, server_round, results, failures):
        if results:
            self.result.mean = parameters_to_ndarrays(results[0][1].parameters)
        self.result.contributed = {proxy.node_id: (int(res.num_examples), dict(res.metrics))
                                   for proxy, res in results}
        return None, {}


def payload_nbytes(content: RecordDict) -> int:
    """Bytes of a message's payload: array data, and bytes and numbers in config and metric records
    (8 bytes a number; keys and framing not counted)."""
    total = 0
    for record in content.values():
        if hasattr(record, "to_numpy_ndarrays"):
            total += sum(array.nbytes for array in record.to_numpy_ndarrays())
            continue
        for value in record.values():
            for item in value if isinstance(value, list) else [value]:
                total += len(item) if isinstance(item, (bytes, str)) else 8
    return total


class _CountingGrid:
    """The run's Grid, counting the payload bytes of what the workflow sends and receives."""

    def __init__(self, grid, result: SecureResult):
        self.grid, self.result = grid, result

    def send_and_receive(self, messages, timeout=None):
        messages = list(messages)
        self.result.bytes_down += sum(payload_nbytes(m.content) for m in messages)
        replies = list(self.grid.send_and_receive(messages, timeout=timeout))
        self.result.bytes_up += sum(payload_nbytes(r.content) for r in replies if not r.has_error())
        return replies

    def __getattr__(self, name):
        return getattr(self.grid, name)


def secure_round(grid, instructions: dict[int, tuple[list[np.ndarray], dict]], round_num: int,
                 shares: int, threshold: int, max_weight: float, timeout: float | None) -> SecureResult:
    """Run SecAgg+ over the nodes of `instructions` (node -> (arrays, config)): each trains from
    its arrays (legacy FitIns) and the server learns the weighted mean of the arrays they return.
    `shares` equal to the number of nodes means every node shares with every other."""
    result = SecureResult(None)
    fitins = {node: FitIns(ndarrays_to_parameters(arrays), config) for node, (arrays, config) in
              instructions.items()}
    counting = _CountingGrid(grid, result)
    context = LegacyContext(Context(run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config={}),
                            strategy=_SampledStrategy(counting, fitins, result))
    first = next(iter(fitins.values()))
    context.state[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(first.parameters, keep_input=True)
    context.state[MAIN_CONFIGS_RECORD] = ConfigRecord({WorkflowKey.CURRENT_ROUND: round_num})
    workflow = SecAggPlusWorkflow(1.0 if shares == len(instructions) else shares, threshold,
                                  max_weight=float(max_weight), clipping_range=secagg.CLIP_RANGE,
                                  quantization_range=secagg.QUANT_LEVELS, modulus_range=secagg.MOD_RANGE,
                                  timeout=timeout)
    _run_workflow(workflow, counting, context, result)
    return result


def _run_workflow(workflow, grid, context, result: SecureResult) -> None:
    """Run the workflow, keeping the protocol's failures (its replies' errors) as text."""
    workflow(grid, context)
    if result.mean is None:
        result.failures.append("the protocol halted: too few clients got through a stage to rebuild the "
                               "masks (fewer live neighbours than the threshold)")

