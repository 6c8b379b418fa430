"""What an evaluated round measures, in as few passes as it can, and the per-text test losses it keeps.

By default the global model is scored on the global test set and on every client's local test
split in ONE batched pass over their union (in-process; a Flower engine asks its clients for
their splits); `fairness_every` thins or turns off the all-client part; `eval_local_models` scores
the sampled clients' local models on the global test set only every K rounds (their own-split
loss comes from the clients and is always kept). Global test texts are scored up to
`eval_length` tokens and classed by full length with the training class edges. The per-text
losses of round 0, the latest and the best round go to `test_losses.npz`, and those of the global
model on every client's split, per round where they were scored in this process, to
`split_losses.npz` (formats below): the statistics of fairness are recomputed from them at report time.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from cllora import records
from cllora.engine.experiment import Experiment, eval_batch_size
from cllora.metrics import (
    class_losses,
    client_losses,
    client_standard_errors,
    per_text_losses,
    pooled_standard_errors,
    split_spread,
    token_weighted_loss,
)
from cllora.model import set_adapter_state
from cllora.train import Batch, evaluate, length_grouped_batches

# ---------------------------------------------------------------- scoring an adapter


@contextlib.contextmanager
def eval_precision(exp: Experiment):
    """Evaluate with fp32 base weights when --eval-fp32 asked for it (training stays bf16)."""
    if exp.fp32_base is None:
        yield
        return
    params = dict(exp.model.named_parameters())
    low = {n: params[n].data for n in exp.fp32_base}
    for n, w in exp.fp32_base.items():
        params[n].data = w  # already on the device (moved once in prepare_experiment)
    try:
        yield
    finally:
        for n, w in low.items():
            params[n].data = w


def texts_loss(sums: np.ndarray, tokens: np.ndarray) -> float:
    """Token-weighted loss of some scored texts (NaN when none has a scored token)."""
    return token_weighted_loss(sums, tokens) if tokens.sum() > 0 else float("nan")


def score_batches(exp: Experiment, state: dict[str, torch.Tensor], batches: list[Batch],
                  on_batch: Callable[[], None] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-example (rows, loss sums, tokens) of an adapter on some batches, in eval precision."""
    set_adapter_state(exp.model, state)
    with eval_precision(exp):
        return evaluate(exp.model, batches, exp.device, on_batch)


def evaluate_test(exp: Experiment, state: dict[str, torch.Tensor],
                  on_batch: Callable[[], None] | None = None) -> float:
    """Token-weighted loss of an adapter on the global test set (the server's measurement)."""
    _, sums, tokens = score_batches(exp, state, exp.global_test_batches, on_batch)
    return texts_loss(sums, tokens)


def evaluate_clients(exp: Experiment, state: dict[str, torch.Tensor],
                     on_batch: Callable[[], None] | None = None) -> np.ndarray:
    """Loss of an adapter on every client's local test split, in one batched pass over their union."""
    rows, sums, tokens = score_batches(exp, state, exp.local_test_batches, on_batch)
    return client_losses(sums, tokens, exp.row_client[rows], len(exp.data.client_test))


def own_loss_and_se(exp: Experiment, state: dict[str, torch.Tensor], client_id: int) -> tuple[float, float]:
    """(loss, standard error) of an adapter on one client's own local test split."""
    loss, spread = score_own(exp, state, client_id)
    return loss, float(pooled_standard_errors([spread])[0])


def score_own(exp: Experiment, state: dict[str, torch.Tensor], client_id: int,
              on_batch: Callable[[], None] | None = None) -> tuple[float, tuple]:
    """(loss, `metrics.split_spread`) of an adapter on one client's own local test split: the
    spread lets a server pool the clients' standard errors without their per-text losses."""
    own = length_grouped_batches(exp.data.train_ids, exp.data.client_test[client_id],
                                 eval_batch_size(exp.config), exp.config.max_length, exp.data.pad_id)
    _, sums, tokens = score_batches(exp, state, own, on_batch)
    return texts_loss(sums, tokens), split_spread(sums, tokens)


# ---------------------------------------------------------------- an evaluated round

@dataclass(frozen=True)
class TestTexts:
    """Per-text result of the global model on the global test set (texts with >= 1 scored token)."""

    index: np.ndarray  # row in the global test set
    tokens: np.ndarray  # predicted (scored) tokens of the text
    loss: np.ndarray  # token-mean loss of the text
    length_class: np.ndarray  # class by full length, training edges


@dataclass(frozen=True)
class SplitTexts:
    """Per-text result of the global model (or a client's own adapter) on the clients' local test
    splits, for the fairness statistics recomputed at report time."""

    owner: np.ndarray  # client of each text
    tokens: np.ndarray  # predicted (scored) tokens of the text
    loss: np.ndarray  # token-mean loss of the text (NaN without a scored token)


@dataclass(frozen=True)
class EvalPlan:
    """The union pass: batches over the global test texts (entries 0..num_test-1, cut at
    eval_length) followed by every client's local test texts (cut at max_length)."""

    batches: list[Batch]
    num_test: int
    owner: np.ndarray  # client of each union entry (-1 for a global test text)


def build_plan(exp: Experiment) -> EvalPlan:
    """The batches of the union pass, built once per experiment (length-grouped, deterministic)."""
    cfg, data = exp.config, exp.data
    split_rows = np.concatenate(data.client_test).astype(np.int64) if data.client_test else np.zeros(0, np.int64)
    owners = [np.full(len(rows), cid) for cid, rows in enumerate(data.client_test)]
    owner = np.concatenate([np.full(len(data.test_ids), -1), *owners]).astype(np.int64)
    num_test = len(data.test_ids)
    ids = list(data.test_ids) + [data.train_ids[r] for r in split_rows]  # entry i of the union
    # the global test texts keep their own batches (exp.global_test_batches, entries 0..num_test-1):
    # a text's score must not depend on which client texts share its batch (padding changes the
    # kernels' shapes, and so the last bits in bf16), or the test loss would differ between partitions
    batches = exp.global_test_batches + length_grouped_batches(
        ids, np.arange(num_test, len(ids)), eval_batch_size(cfg), cfg.max_length, data.pad_id)
    return EvalPlan(batches, num_test, owner)


def _plan(exp: Experiment) -> EvalPlan:
    if exp.eval_plan is None:
        exp.eval_plan = build_plan(exp)  # once per experiment
    return exp.eval_plan


def is_due(every: int, round_num: int, rounds: int) -> bool:
    """Rounds that are a multiple of `every`, and the last one; never for every = 0."""
    return every > 0 and (round_num % every == 0 or round_num == rounds)


def local_scores(exp: Experiment, good: list, round_num: int,
                 on_batch: Callable[[], None] | None = None) -> dict[int, tuple[float | None, float | None]]:
    """Each good update's local model on the global test set (when due) and on its own split (as
    the client scored it). Scored before the server step: FLoRA/FedEx-LoRA then change the base."""
    cfg = exp.config
    local_due = is_due(cfg.eval_local_models, round_num, cfg.rounds)
    return {u.client_id: (evaluate_test(exp, u.state, on_batch) if local_due else None, u.own_test_loss)
            for u in good}


def score_round(exp: Experiment, clients, global_state: dict, good: list, round_num: int,
                on_batch: Callable[[], None] | None = None, local: dict | None = None,
                personal: dict[int, dict] | None = None) -> records.RoundScores:
    """The evaluations of an evaluated round (see the module docstring for what runs when).
    `local`: the local models' scores if already taken; `personal`: each client's own adapter
    where the strategy personalises (FedSA-LoRA), scored on that client's split instead of the
    global one (in-process only: over Flower each client scores the global model on its split)."""
    cfg = exp.config
    fair = is_due(cfg.fairness_every, round_num, cfg.rounds)
    split_texts = None
    if getattr(clients, "splits_on_server", False) and personal is None:
        test, split = _global_pass(exp, global_state, fair, on_batch)
        losses, se, split_texts = split if split is not None else (None, None, None)
    elif getattr(clients, "splits_on_server", False):
        test, _ = _global_pass(exp, global_state, False, on_batch)
        losses, se, split_texts = _personal_pass(exp, personal, on_batch) if fair else (None, None, None)
    else:  # the clients score their own splits (Flower) and report their spreads
        test, _ = _global_pass(exp, global_state, False, on_batch)
        losses, se = clients.test_losses(global_state) if fair else (None, None)
    if local is None:
        local = local_scores(exp, good, round_num, on_batch)
    test_loss = token_weighted_loss(test.loss * test.tokens, test.tokens) if test.tokens.sum() else float("nan")
    return records.RoundScores(
        test_loss, losses, local, local_se={u.client_id: u.own_test_se for u in good}, client_se=se,
        client_texts=np.array([len(rows) for rows in exp.data.client_test], dtype=np.int64),
        class_losses=class_losses(test.loss * test.tokens, test.tokens, test.length_class, cfg.num_classes),
        test_texts=test, split_texts=split_texts)


def _global_pass(exp: Experiment, state: dict, with_splits: bool, on_batch):
    """The global model on the global test set, and with_splits also on every client's split in
    the same batched pass: (TestTexts, (client losses, standard errors) or None)."""
    if not with_splits:
        rows, sums, tokens = score_batches(exp, state, exp.global_test_batches, on_batch)
        return _test_texts(exp, rows, sums, tokens), None
    plan = _plan(exp)
    entries, sums, tokens = score_batches(exp, state, plan.batches, on_batch)
    is_test = entries < plan.num_test
    test = _test_texts(exp, entries[is_test], sums[is_test], tokens[is_test])
    return test, _split_losses(exp, plan.owner[entries[~is_test]], sums[~is_test], tokens[~is_test])


def _split_losses(exp: Experiment, owner: np.ndarray, sums: np.ndarray, tokens: np.ndarray):
    """(each client's token-weighted loss, its standard error, the per-text SplitTexts) from
    per-text sums and owners."""
    num_clients = len(exp.data.client_test)
    order = np.lexsort((sums, tokens, owner))  # a canonical order: by client, then token count
    texts = SplitTexts(owner[order].astype(np.int64), tokens[order].astype(np.int64),
                       per_text_losses(sums[order], tokens[order]))
    return (client_losses(sums, tokens, owner, num_clients),
            client_standard_errors(sums, tokens, owner, num_clients), texts)


def _personal_pass(exp: Experiment, personal: dict[int, dict], on_batch):
    """Each client's own adapter (FedSA-LoRA) on its own split: (client losses, standard errors),
    NaN for the clients without one."""
    cfg, data = exp.config, exp.data
    parts = []
    for cid in sorted(personal):
        rows = data.client_test[cid]
        batches = length_grouped_batches(data.train_ids, rows, eval_batch_size(cfg), cfg.max_length,
                                         data.pad_id)
        _, sums, tokens = score_batches(exp, personal[cid], batches, on_batch)
        parts.append((np.full(len(sums), cid, dtype=np.int64), sums, tokens))
    owner, sums, tokens = (np.concatenate(x) for x in zip(*parts))
    return _split_losses(exp, owner, sums, tokens)


def _test_texts(exp: Experiment, rows: np.ndarray, sums: np.ndarray, tokens: np.ndarray) -> TestTexts:
    order = np.argsort(rows, kind="stable")
    rows, sums, tokens = rows[order], sums[order], tokens[order]
    classes = exp.data.test_classes
    length_class = classes[rows] if classes is not None and len(classes) else np.zeros(len(rows), np.int64)
    return TestTexts(rows.astype(np.int64), tokens.astype(np.int64), per_text_losses(sums, tokens),
                     np.asarray(length_class, dtype=np.int64))


# ---------------------------------------------------------------- test_losses.npz

def save_test_losses(out: Path, round_num: int, texts: TestTexts, test_loss: float) -> None:
    """Update `test_losses.npz` (the run-directory table of docs/guide.md lists it):
    arrays text_index, tokens, length_class (int64) and loss_r0, loss_final, loss_best (float64,
    token-mean loss per text) of the global model, scalars final_round and best_round. The best
    round is the first with the lowest global test loss (as summary.json's best_round); round 0's
    column is NaN for a run resumed from before this file existed."""
    path = Path(out) / records.TEST_LOSSES
    old = records.read_npz(path) if round_num > 0 else None
    if old is not None and not np.array_equal(old["text_index"], texts.index):
        old = None  # another test set (should not happen): start over
    r0 = texts.loss if old is None and round_num == 0 else (old["loss_r0"] if old is not None
                                                              else np.full(len(texts.loss), np.nan))
    best_loss = _mean_loss(old["loss_best"], old["tokens"]) if old is not None else np.inf
    improved = test_loss < best_loss
    records.write_npz(path, {
        "text_index": texts.index, "tokens": texts.tokens, "length_class": texts.length_class,
        "loss_r0": r0, "loss_final": texts.loss,
        "loss_best": texts.loss if improved else old["loss_best"],
        "final_round": np.int64(round_num),
        "best_round": np.int64(round_num if improved else int(old["best_round"])),
    })


def _mean_loss(loss: np.ndarray, tokens: np.ndarray) -> float:
    total = float(np.sum(tokens))
    return float(np.sum(loss * tokens) / total) if total > 0 else np.inf


# ---------------------------------------------------------------- split_losses.npz

def save_split_losses(out: Path, round_num: int, texts: SplitTexts | None) -> None:
    """Add one round to `split_losses.npz` (the run-directory table of docs/guide.md lists it):
    per round r where every client's split was scored in this process, arrays owner_r<r> and
    tokens_r<r> (int64) and loss_r<r> (float64, token-mean loss per text), texts ordered by client.
    A resumed round replaces its arrays; nothing is written in a round without them."""
    if texts is None:
        return
    path = Path(out) / records.SPLIT_LOSSES
    old = dict(records.read_npz(path) or {}) if path.exists() else {}
    old.update({f"owner_r{round_num}": texts.owner, f"tokens_r{round_num}": texts.tokens,
                f"loss_r{round_num}": texts.loss})
    records.write_npz(path, old)
