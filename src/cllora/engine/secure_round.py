"""A round under secure aggregation (SecAgg+): the server learns only the weighted mean of the
sampled clients' adapters, never one of them, so the round loop takes another path.

The clients (`Clients.secure_fit`, Flower's SuperNodes) return that mean, each client's clear-text
numbers (example count, training loss, own-split loss) and who dropped out. The strategy's server
step takes the mean as its one reply (fedavg, fedprox, the server optimizers, ffa-lora: their
server needs nothing else; cllora.privacy.secagg refuses the rest). What needs an individual
update is not computed (payload checks but the sum's, drift, aggregation error, local models on
the global test set): its columns stay empty and config.json says why. A round whose protocol
halts (too few clients got through) writes nothing and stops the run, as a round whose every
client failed does; the rounds before it stay, and the run can be resumed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from cllora import records
from cllora.aggregate import Reply, check_update
from cllora.engine import evaluation
from cllora.engine.client import ClientUpdate, strategy_of
from cllora.engine.experiment import Experiment, sample_clients
from cllora.errors import RunFailed, UserError
from cllora.privacy import secagg


@dataclass
class SecureSum:
    """What a SecAgg+ round gives the server."""

    mean: dict | None  # the weighted mean of the contributors' adapters; None when the round halted
    updates: list[ClientUpdate]  # one per sampled client: its clear numbers, its `state` {} (never seen)
    bound: float = float("nan")  # |mean - exact weighted mean| <= bound, entry by entry
    bytes_up: int = 0
    bytes_down: int = 0
    failure: str | None = None  # why the round cannot be used
    protocol: dict = field(default_factory=dict)  # shares, threshold, max_weight of the round


def check_clients(config, in_process: bool) -> None:
    """SecAgg+ needs parties apart from the server: refused on the in-process engine."""
    if config.secagg and in_process:
        raise UserError("secagg needs separate parties: run it on Flower (engine flower-sim, or a "
                        "deployment written by `cllora flower-app --secagg`)")


def record(config) -> dict:
    """config.json's `secure_aggregation` entry: the protocol, its quantisation, what the server
    did not compute; empty without secagg."""
    if not config.secagg:
        return {}
    shares, threshold = secagg.protocol(config.clients_per_round, config.secagg_shares, config.secagg_threshold)
    return {"secure_aggregation": {
        "protocol": "SecAgg+ (flwr SecAggPlusWorkflow + secaggplus_mod)", "shares": shares,
        "threshold": threshold, "clipping_range": secagg.CLIP_RANGE, "quantization_levels": secagg.QUANT_LEVELS,
        "modulus_range": secagg.MOD_RANGE,
        "not_computed": list(secagg.NOT_COMPUTED),
        "not_computed_because": "SecAgg+: the server never sees an individual update",
        "released_in_clear_to_server": ["each client's example count, training loss, own-split loss and "
                                        "timings (clients.csv)", "who dropped out"]}}


def run_round(exp: Experiment, clients, state, round_num: int, out: Path, log, progress, score, save) -> None:
    """One secure round: sample, the clients' secure mean, the strategy's step on it, evaluate
    when due, record, checkpoint. `score(global_state, good, round_num)` and `save()` are the round
    loop's (cllora.engine.loop)."""
    cfg = exp.config
    strategy, options = strategy_of(cfg)
    start = time.perf_counter()
    evaluate_now = evaluation.is_due(cfg.eval_every, round_num, cfg.rounds)
    sampled = sample_clients(cfg, round_num)
    result: SecureSum = clients.secure_fit(state.global_state, sampled, round_num, evaluate_now)
    train_s = time.perf_counter() - start
    for u in result.updates:
        if u.error:
            log(f"round {round_num}: client {u.client_id} dropped out of secure aggregation: {u.error}")
    reason = result.failure or (None if result.mean is not None else "no secure mean")
    reason = reason or check_update(result.mean, exp.initial_state)
    if reason:
        raise RunFailed(f"round {round_num}: secure aggregation failed ({reason}); nothing of this round "
                        f"was written; results up to round {round_num - 1} are in {out}")
    good = [u for u in result.updates if not u.failed]
    weight = sum(u.num_train_examples for u in good)
    step = strategy.aggregate(state.global_state, state.server_state, [Reply(result.mean, weight)], options)
    state.global_state, state.server_state = step.global_state, step.server_state
    state.last_round = round_num
    state.bytes_cumulative += result.bytes_up + result.bytes_down
    eval_start = time.perf_counter()
    scores = score(state.global_state, good, round_num) if evaluate_now else None
    eval_s = time.perf_counter() - eval_start
    overhead = time.perf_counter() - start - train_s - eval_s
    state.rounds.append({**records.round_row(round_num, scores, result.updates, result.bytes_up,
                                             result.bytes_down, state.bytes_cumulative, train_s, eval_s,
                                             overhead),
                         "secagg_contributors": len(good), "secagg_bound": result.bound})
    state.clients.extend(records.client_rows(round_num, cfg.clients, result.updates, scores, exp.client_ranks))
    save()
    progress.round_done(state.rounds[-1])
