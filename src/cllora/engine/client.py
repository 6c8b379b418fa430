"""What one client does in a round: train the global adapter on its local rows the way the run's
strategy says (`client_update`), and hand back a `ClientUpdate`. The same step runs in-process and
in a Flower ClientApp. Its randomness is derived from (seed, purpose, round, client), so any round
can be re-run on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from cllora.aggregate import ClientView, LocalPlan, Strategy, get_strategy, strategy_options
from cllora.config.settings import RunConfig
from cllora.engine.evaluation import own_loss_and_se
from cllora.engine.experiment import Experiment
from cllora.model import get_adapter_state, lora_parameters, set_adapter_state
from cllora.ranks import truncate, zero_grads_above
from cllora.seeds import stream, torch_seed
from cllora.train import Batch, StepHooks, TrainResult, length_grouped_batches, train_local


@dataclass
class ClientUpdate:
    """What one client sends back after a round: its adapter and how its training went."""

    client_id: int
    state: dict[str, torch.Tensor] | None  # None when nothing usable came back
    num_train_examples: int
    result: TrainResult
    own_test_loss: float | None = None  # the local model on the client's own local test split
    own_test_se: float | None = None  # that loss's standard error (texts as the sampling units)
    error: str | None = None  # why the update is excluded from the average (set by the engine)
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # strategy uplink (SCAFFOLD: Δc_i)
    client_state: dict[str, torch.Tensor] | None = None  # what the client keeps (None: kept elsewhere)

    @property
    def failed(self) -> bool:
        return self.state is None or self.error is not None


def strategy_of(config: RunConfig) -> tuple[Strategy, dict]:
    """The run's federated strategy and the options it runs with (cllora.aggregate)."""
    return get_strategy(config.strategy), strategy_options(config.strategy, config.to_dict())


def client_update(exp: Experiment, global_state: dict[str, torch.Tensor], client_id: int,
                  round_num: int, on_step: Callable[[float | None], None] | None = None,
                  evaluate_own_split: bool = False, stream_id: int | None = None,
                  downlink: dict | None = None, own_state: dict | None = None) -> ClientUpdate:
    """Train the global adapter on one client's local training rows for E epochs (and, when
    asked, score the resulting local model on the client's own local test split), the way the
    run's strategy says: its `downlink` tensors and the client's `own_state` from its last round
    go in; the update carries the strategy's uplink `extra` and the client's new state.

    `client_id` is the client's row in `exp.data`; `stream_id` (default: the same) names its
    random streams: a Flower client with its own texts is row 0 of its data but keeps the
    streams of its partition id, so no two clients train on the same random draws."""
    cfg, data = exp.config, exp.data
    strategy, _ = strategy_of(cfg)
    stream_key = client_id if stream_id is None else stream_id
    view, plan, start, rank = client_plan(exp, global_state, stream_key, round_num, downlink, own_state)
    set_adapter_state(exp.model, start)
    torch.manual_seed(torch_seed(cfg.seed, "train", round_num, stream_key, replicate=cfg.replicate))
    rows = data.client_train[client_id]

    def batches(epoch: int) -> list[Batch]:
        rng = stream(cfg.seed, "batches", round_num, stream_key, epoch, replicate=cfg.replicate)
        return length_grouped_batches(data.train_ids, rows, cfg.batch_size, cfg.max_length,
                                      data.pad_id, rng)

    named = lora_parameters(exp.model)
    loss_term, grad_hook = plan.bind(named)
    if rank < cfg.rank:  # a lower-rank client trains only its leading components (cllora.ranks)
        grad_hook = _then(grad_hook, lambda: zero_grads_above(named, rank))
    result = train_local(exp.model, [p for n, p in named.items() if plan.trains(n)], batches,
                         cfg.local_epochs, cfg.optimizer, cfg.lr, exp.device, on_step,
                         hooks=StepHooks(loss_term, grad_hook))
    trained = truncate(get_adapter_state(exp.model), rank)
    extra, kept = (truncate(s, rank) for s in strategy.finish(view, trained, result.steps))
    update = ClientUpdate(client_id, trained, len(rows), result, extra=extra, client_state=kept)
    if evaluate_own_split and math.isfinite(result.train_loss):
        update.own_test_loss, update.own_test_se = own_loss_and_se(exp, update.state, client_id)
    return update


def client_plan(exp: Experiment, global_state: dict[str, torch.Tensor], stream_key: int, round_num: int,
                downlink: dict | None = None, own_state: dict | None = None
                ) -> tuple[ClientView, LocalPlan, dict[str, torch.Tensor], int]:
    """How a client trains in a round: what it knows (`cllora.aggregate.ClientView`: the global
    adapter cut to its rank, the downlink, its own state, the options, its seed for the round),
    its strategy's local plan, the adapter it starts from (the plan's start cut to its rank) and
    its rank."""
    cfg = exp.config
    strategy, options = strategy_of(cfg)
    rank = exp.client_ranks[stream_key] if exp.client_ranks else cfg.rank
    seed = torch_seed(cfg.seed, "fresh_adapter", round_num, stream_key, replicate=cfg.replicate)
    view = ClientView(truncate(global_state, rank), downlink or {}, own_state or {}, options, seed)
    plan = strategy.local(view)
    start = plan.start if plan.start is view.global_state else truncate(plan.start, rank)
    return view, plan, start, rank


def client_start(exp: Experiment, global_state: dict[str, torch.Tensor], client_id: int, round_num: int,
                 downlink: dict | None = None, own_state: dict | None = None) -> dict[str, torch.Tensor]:
    """The adapter a client's training starts from in a round: what its drift is measured from,
    and its own model where the strategy personalises (FLoRA's fresh draw is repeated from its seed)."""
    return client_plan(exp, global_state, client_id, round_num, downlink, own_state)[2]


def _then(first: Callable[[], None] | None, second: Callable[[], None]) -> Callable[[], None]:
    """One gradient hook that runs `first` (the strategy's, if any) and then `second`."""
    if first is None:
        return second

    def both() -> None:
        first()
        second()
    return both
