"""The federated round loop, and the in-process clients it drives by default.

Reads top to bottom: check the run directory, prepare data and model, evaluate round 0; then each
round sample clients, let them train, check their updates, aggregate, evaluate, and checkpoint
atomically. Who the clients are is a `Clients` object: `InProcessClients` simulates them all on
one frozen base model with adapters swapped in and out; `cllora.flower.supernodes.FlowerClients` reaches
them as Flower SuperNodes. Everything else (sampling, payload checks, the strategy's server step
(cllora.aggregate), client drift, evaluation on the global test set, files, resume) is this one
loop for both engines. The checkpoint holds the global adapter, the strategy's server state and
the clients' own states kept in this process (SCAFFOLD's c_i), so a resume continues exactly.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from cllora import records
from cllora.aggregate import Reply, Strategy, check_update, client_drift, round_bytes, state_nbytes
from cllora.aggregate.checkpoint_state import pack_state, split_base, unpack_state, with_base
from cllora.aggregate.error import aggregation_error
from cllora.aggregate.lora_math import add_deltas
from cllora.config.settings import RunConfig
from cllora.engine import evaluation, private_round, secure_round, tracking
from cllora.engine.client import ClientUpdate, client_start, client_update, strategy_of
from cllora.engine.evaluation import evaluate_clients
from cllora.engine.experiment import (
    Experiment,
    merge_into_base,
    prepare_data,
    prepare_experiment,
    release,
    sample_clients,
)
from cllora.engine.progress import RunProgress
from cllora.engine.runtime import build_runtime
from cllora.errors import RunFailed
from cllora.metrics import SE_ESTIMATOR

TRUNCATION_WARNING = 0.10  # warn when more than this share of training texts exceeds --max-length


class Clients(Protocol):
    """The clients of a run, however they are reached."""

    def fit(self, global_state: dict, client_ids: list[int], round_num: int, evaluate: bool,
            downlink: dict, own_states: dict[int, dict]) -> list[ClientUpdate]:
        """Train the global adapter on each client; one ClientUpdate per client asked (a client
        that could not answer gets one with its `error` set). With `evaluate`, each client also
        scores its local model on its own local test split. `downlink` (the strategy's tensors
        beside the adapter) goes to every client; `own_states` are the clients' own strategy
        states where this process keeps them (Flower's SuperNodes keep theirs)."""

    def test_losses(self, global_state: dict) -> np.ndarray:
        """The global adapter's loss on every client's local test split (NaN where unknown)."""


class InProcessClients:
    """Every client simulated in this process on the experiment's one base model."""

    splits_on_server = True  # cllora.engine.evaluation scores every split here, in one pass with the test set

    def __init__(self, exp: Experiment, progress: RunProgress):
        self.exp, self.progress = exp, progress

    def fit(self, global_state, client_ids, round_num, evaluate, downlink, own_states):
        updates = []
        for cid in client_ids:
            self.progress.client_start(cid, len(self.exp.data.client_train[cid]), self.exp.config)
            updates.append(client_update(self.exp, global_state, cid, round_num, self.progress.step,
                                         evaluate_own_split=evaluate, downlink=downlink,
                                         own_state=own_states.get(cid)))
        return updates

    def test_losses(self, global_state):
        return evaluate_clients(self.exp, global_state, self.progress.eval_tick)


ClientsFactory = Callable[[Experiment, RunProgress], Clients]


@dataclass
class RunState:
    """What survives between rounds: the global adapter, the strategy's server state and the
    clients' own states (those kept in this process), and the metric rows so far."""

    global_state: dict
    last_round: int = -1  # last completed round (evaluated or not)
    bytes_cumulative: int = 0
    rounds: list[dict] = field(default_factory=list)
    clients: list[dict] = field(default_factory=list)
    server_state: dict = field(default_factory=dict)
    client_states: dict[int, dict] = field(default_factory=dict)
    base_total: dict = field(default_factory=dict)  # running total merged into base weights (FLoRA, FedEx)
    dp: private_round.DpPlan | None = None  # client-level DP (re-derived from the config, not saved)


def run_experiment(config: RunConfig, out: Path, *, resume: bool = False, overwrite: bool = False,
                   base_model=None, tokenizer=None, progress: RunProgress | None = None,
                   log: Callable[[str], None] = print,
                   clients: ClientsFactory = InProcessClients) -> dict:
    """Run (or resume) one federated LoRA experiment into `out`; returns the summary dict.

    Pass `base_model`/`tokenizer` to reuse them across runs (a sweep); the base model is handed
    back unchanged (LoRA layers removed) when the run ends. `clients` builds the clients from the
    prepared experiment (default: simulated in this process).
    """

    out = Path(out)
    secure_round.check_clients(config, in_process=clients is InProcessClients)
    records.check_run_dir(out, config, resume=resume, overwrite=overwrite)
    tracking.check_available(config.log_to)
    runtime = build_runtime(config, base_model=base_model, tokenizer=tokenizer, load_model=False, log=log)
    if resume:
        records.check_resume_runtime(out, config, str(runtime.device), runtime.precision)
    data = prepare_data(config, runtime.tokenizer, log)
    truncation = data.truncation(config.max_length)
    _report_data(data, truncation, config, log)
    dp = private_round.plan(config, data.labels, data.client_train, log,  # before the model loads
                            records.recorded_noise_source(out) if resume else None)
    exp = prepare_experiment(config, runtime.load_base(config, log), runtime.tokenizer, runtime.device,
                             runtime.precision, data, log)
    progress = progress or RunProgress(enabled=False)
    tracker = None
    try:
        if resume:  # every check before the first write: an edited config.json is refused untouched
            records.check_resume_state(out, config, {k: tuple(v.shape) for k, v in exp.initial_state.items()},
                                       data.partition_dict(config))
        records.init_run_dir(out, resume=resume, overwrite=overwrite)  # only now: bad input leaves nothing
        tracker = tracking.attach(progress, config.log_to, out, config.to_dict())
        adapter_bytes = state_nbytes(exp.initial_state)
        trainable, total = exp.model.get_nb_trainable_parameters()
        if runtime.fallback:
            log(f"warning: --device auto runs on the CPU: {runtime.fallback}")
        records.write_config(out, config, {**runtime.record(), "adapter_bytes": adapter_bytes,
                                           "trainable_params": trainable, "total_params": total,
                                           "se_estimator": SE_ESTIMATOR,
                                           **records.noise_record(dp.noise_source if dp else None),
                                           **secure_round.record(config)},
                             resume=resume)
        partition = data.partition_dict(config)
        records.write_json(out / "partition.json", partition)
        progress.run_started(out, partition)
        reached = clients(exp, progress)
        state = _start_state(exp, reached, out, progress)
        state.dp = dp
        with progress.run(config.rounds, start=state.last_round):
            for round_num in range(state.last_round + 1, config.rounds + 1):
                _run_round(exp, reached, state, round_num, out, progress, log)
        summary = _finish(exp, state, out, truncation, adapter_bytes, progress)
    finally:
        tracking.detach(progress, tracker)
        release(exp)
    return summary


def _report_data(data, truncation: dict, config: RunConfig, log) -> None:
    if data.dropped_empty:
        log(f"dropped {data.dropped_empty} empty or whitespace-only texts")
    for note in data.notes:
        log(f"partition: {note}")
    shares = ", ".join(f"{100 * s:.0f}%" for s in truncation["per_class"])
    log(f"truncated to {config.max_length} tokens: {100 * truncation['overall']:.1f}% of training "
        f"texts (per length class: {shares})")
    if truncation["overall"] > TRUNCATION_WARNING:
        log(f"warning: more than {TRUNCATION_WARNING:.0%} of training texts exceed --max-length {config.max_length}; "
            "the longest length classes partly collapse into one")


def _start_state(exp: Experiment, clients: Clients, out: Path, progress: RunProgress) -> RunState:
    """Resume from the checkpoint, or evaluate the untrained adapter as round 0."""
    last, saved, meta, rounds, clients_rows = records.load_progress(out)
    if last >= 0:
        saved, base_total = split_base(saved)
        global_state, server_state, client_states = unpack_state(saved)
        # a checkpoint's tensors come back in sorted name order: keep the order the run held (the
        # model's), so every sum over tensors (norms, drift) adds as an uninterrupted run's does
        global_state = {k: global_state[k] for k in exp.initial_state} \
            if global_state.keys() == exp.initial_state.keys() else global_state
        if base_total:
            merge_into_base(exp, base_total)
        return RunState(global_state, last, meta.get("bytes_cumulative", 0), rounds, clients_rows,
                        server_state, client_states, base_total)
    strategy, options = strategy_of(exp.config)
    state = RunState(exp.initial_state, last_round=0,
                     server_state=strategy.init_server(exp.initial_state, options))
    start = time.perf_counter()
    scores = _score_round(exp, clients, state.global_state, [], progress, 0, out)
    state.rounds.append(records.round_row(0, scores, [], 0, 0, 0, 0.0, time.perf_counter() - start, 0.0))
    state.clients.extend(records.client_rows(0, exp.config.clients, [], scores, exp.client_ranks))
    _save(out, state, exp.config)
    progress.round_done(state.rounds[-1])
    return state


def _save(out: Path, state: RunState, config: RunConfig) -> None:
    records.save_round(out, state.last_round,
                       with_base(pack_state(state.global_state, state.server_state, state.client_states),
                                 state.base_total),
                       state.rounds, state.clients, {"bytes_cumulative": state.bytes_cumulative,
                                                     "config": config.to_dict()},
                       config.num_classes)


def rejection(update: ClientUpdate, reference: dict, extra_reference: dict | None = None) -> str | None:
    """Why an update may not join the average: the client's own error, a non-finite training
    loss, or a payload that does not match the global adapter or the strategy's uplink
    (names, shapes, dtypes, finite)."""
    if update.error:
        return update.error
    if not math.isfinite(update.result.train_loss):
        return "non-finite training loss"
    reason = check_update(update.state, reference)
    if reason is None and extra_reference:
        reason = check_update(update.extra, extra_reference)
        reason = reason and f"strategy payload: {reason}"
    return reason


def _run_round(exp: Experiment, clients: Clients, state: RunState, round_num: int,
               out: Path, progress: RunProgress, log) -> None:
    """One round: sample, train, screen, aggregate; evaluate when due; record; checkpoint.
    Every round is recorded (who was sampled, who failed and why, training loss, bytes); only
    the evaluation columns stay empty in a round that is not evaluated."""
    cfg = exp.config
    if cfg.secagg:  # the server sees only the weighted mean (cllora.engine.secure_round)
        return secure_round.run_round(exp, clients, state, round_num, out, log, progress, save=lambda: _save(
            out, state, cfg), score=lambda g, good, r: _score_round(exp, clients, g, good, progress, r, out))
    strategy, options = strategy_of(cfg)
    round_start = time.perf_counter()
    evaluate_now = evaluation.is_due(cfg.eval_every, round_num, cfg.rounds)
    downlink = strategy.downlink(state.server_state)
    sampled = private_round.sample(cfg, state.dp, round_num, sample_clients)
    updates = clients.fit(state.global_state, sampled, round_num, evaluate_now, downlink, state.client_states)
    train_s = time.perf_counter() - round_start
    good = _screen(updates, exp.initial_state, strategy.uplink(exp.initial_state), round_num, out, log)
    private, dp_row = private_round.private_reply(state.dp, cfg, state.global_state, good, round_num) \
        if state.dp else (None, {})
    starts = [client_start(exp, state.global_state, u.client_id, round_num, downlink,
                           state.client_states.get(u.client_id)) for u in good]
    drift = client_drift(starts, [u.state for u in good])
    agg_error = aggregation_error([u.state for u in good], [u.num_train_examples for u in good],
                                  state.global_state)
    eval_start = time.perf_counter()  # local models are scored on the base they trained on
    local = evaluation.local_scores(exp, good, round_num, progress.eval_tick) if evaluate_now else None
    eval_s = time.perf_counter() - eval_start
    if _aggregate(strategy, options, state, good, private):
        merge_into_base(exp, state.base_total)
    state.last_round = round_num
    bytes_up, bytes_down = _round_bytes(strategy, exp.initial_state, downlink, updates, exp.client_ranks)
    state.bytes_cumulative += bytes_up + bytes_down
    eval_start = time.perf_counter()
    scores = _score_round(exp, clients, state.global_state, good, progress, round_num, out, local,
                          _personal_adapters(exp, strategy, state, round_num + 1)) if evaluate_now else None
    eval_s += time.perf_counter() - eval_start
    overhead = time.perf_counter() - round_start - train_s - eval_s
    state.rounds.append({**records.round_row(round_num, scores, updates, bytes_up, bytes_down,
                                             state.bytes_cumulative, train_s, eval_s, overhead, drift,
                                             agg_error), **dp_row})
    state.clients.extend(records.client_rows(round_num, cfg.clients, updates, scores, exp.client_ranks))
    _save(out, state, exp.config)
    progress.round_done(state.rounds[-1])


def _aggregate(strategy: Strategy, options: dict, state: RunState, good: list[ClientUpdate],
               private: Reply | None = None) -> bool:
    """The strategy's server step over the good updates (with client-level DP, over the one
    `private` reply instead: the noised mean of their clipped updates); the clients' new own
    states are kept (a failed client keeps its old one, as the server ignored its update). True
    when the step added to the base weights' running delta total (the caller merges it)."""
    replies = [private] if private is not None else \
        [Reply(u.state, u.num_train_examples, u.extra, u.client_id) for u in good]
    step = strategy.aggregate(state.global_state, state.server_state, replies, options)
    if step.base_delta:
        state.base_total = add_deltas(state.base_total, step.base_delta)
    state.global_state, state.server_state = step.global_state, step.server_state
    for u in good:
        if u.client_state is not None:
            state.client_states[u.client_id] = u.client_state
    return bool(step.base_delta)


def _personal_adapters(exp: Experiment, strategy: Strategy, state: RunState,
                       next_round: int) -> dict[int, dict] | None:
    """Each client's own model where the strategy personalises it (FedSA-LoRA: the shared A with
    the client's own B), for the clients that have trained, so have one: a client that never
    trained has no model of its own and is left out of fairness (NaN in clients.csv). None when
    every client's model is the global one (no personalisation, or no client trained yet)."""
    if not strategy.personal or not state.client_states:
        return None
    downlink = strategy.downlink(state.server_state)
    return {cid: client_start(exp, state.global_state, cid, next_round, downlink, own)
            for cid, own in sorted(state.client_states.items())}


def _round_bytes(strategy: Strategy, adapter: dict, downlink: dict, updates: list[ClientUpdate],
                 ranks: list[int]) -> tuple[int, int]:
    """(uplink, downlink) bytes of a round (cllora.aggregate.traffic): every sampled client
    received; every client that replied with an adapter sent; each at its rank."""
    return round_bytes(strategy, adapter, downlink,
                       [(ranks[u.client_id], u.extra if u.state is not None else None) for u in updates])


def _screen(updates: list[ClientUpdate], reference: dict, extra_reference: dict, round_num: int,
            out: Path, log) -> list:
    """Mark the updates that may not join the average (with the reason); the good ones, or stop."""
    for update in updates:
        update.error = rejection(update, reference, extra_reference)
        if update.error:
            log(f"round {round_num}: client {update.client_id} excluded: {update.error}")
    good = [u for u in updates if not u.failed]
    if not good:
        reasons = "; ".join(f"{u.client_id}: {u.error}" for u in updates)
        raise RunFailed(f"round {round_num}: every sampled client failed ({reasons}); "
                        f"results up to round {round_num - 1} are in {out}")
    return good


def _score_round(exp: Experiment, clients: Clients, global_state: dict, good: list[ClientUpdate],
                 progress: RunProgress, round_num: int, out: Path, local: dict | None = None,
                 personal: dict[int, dict] | None = None) -> records.RoundScores:
    """The evaluations of a round (cllora.engine.evaluation: the global model on the global test set and
    every client's split in one pass, local models when due, or `local` as already scored; each
    client's `personal` adapter on its split where the strategy personalises); keeps the per-text
    test losses."""
    scores = evaluation.score_round(exp, clients, global_state, good, round_num, progress.eval_tick,
                                    local, personal)
    evaluation.save_test_losses(out, round_num, scores.test_texts, scores.test_loss)
    evaluation.save_split_losses(out, round_num, scores.split_texts)
    return scores


def _finish(exp: Experiment, state: RunState, out: Path, truncation: dict, adapter_bytes: int,
            progress: RunProgress) -> dict:
    from cllora.model import set_adapter_state  # lazy: torch, transformers

    set_adapter_state(exp.model, state.global_state)
    exp.model.save_pretrained(str(out / "adapter"))
    summary = records.summarize(state.rounds, {
        "model": exp.config.model, "dataset": exp.config.dataset, "scheme": exp.config.scheme,
        "alpha": exp.config.alpha, "precision": exp.precision, "device": str(exp.device),
        "adapter_bytes": adapter_bytes, "truncation": truncation, "out": str(out)})
    records.write_json(out / "summary.json", summary)
    progress.run_finished(out, state.rounds, state.clients)
    return summary
