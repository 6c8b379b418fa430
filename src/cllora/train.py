"""Local training and evaluation loops over token-id batches (torch only, model passed in).

Batches are padded dynamically to their longest sequence (never to max_length) and grouped by
length so padding stays small; labels are masked on padding; losses are token-weighted.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

MEGABATCH = 50  # batches per length-sorted group: shuffled like HF's LengthGroupedSampler


@dataclass(frozen=True)
class Batch:
    input_ids: torch.Tensor  # [B, T] long, right-padded
    attention_mask: torch.Tensor  # [B, T] long
    rows: np.ndarray  # which examples (row indices) the batch holds, in order

    @property
    def num_predicted(self) -> int:
        """Tokens that get a loss: every real token but the first of each sequence."""
        return int(self.attention_mask[:, 1:].sum())

    @property
    def num_real(self) -> int:
        return int(self.attention_mask.sum())


def collate(ids: Sequence[np.ndarray], rows: np.ndarray, max_length: int, pad_id: int) -> Batch:
    """Right-pad sequences (truncated to max_length) to the longest one in the batch."""
    seqs = [ids[r][:max_length] for r in rows]
    width = max(len(s) for s in seqs)
    input_ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, seq in enumerate(seqs):
        input_ids[i, : len(seq)] = torch.from_numpy(seq.astype(np.int64))
        mask[i, : len(seq)] = 1
    return Batch(input_ids, mask, np.asarray(rows))


def length_grouped_batches(ids: Sequence[np.ndarray], rows: np.ndarray, batch_size: int,
                           max_length: int, pad_id: int,
                           rng: np.random.Generator | None = None) -> list[Batch]:
    """Batches of similar length. With rng: shuffle, sort within megabatches, shuffle batch order
    (training). Without: sort all rows by length, longest first (evaluation, deterministic)."""
    rows = np.asarray(rows, dtype=np.int64)
    rows = rows[[len(ids[r]) >= 2 for r in rows]] if len(rows) else rows  # 1 token predicts nothing
    if len(rows) == 0:
        return []
    lengths = np.array([min(len(ids[r]), max_length) for r in rows])
    if rng is None:
        order = np.lexsort((rows, -lengths))
        chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    else:
        perm = rng.permutation(len(rows))
        chunks = []
        for start in range(0, len(perm), batch_size * MEGABATCH):
            mega = perm[start:start + batch_size * MEGABATCH]
            mega = mega[np.argsort(-lengths[mega], kind="stable")]
            chunks.extend(mega[i:i + batch_size] for i in range(0, len(mega), batch_size))
        chunks = [chunks[i] for i in rng.permutation(len(chunks))]
    return [collate(ids, rows[c], max_length, pad_id) for c in chunks]


def padded_batches(ids: Sequence[np.ndarray], rows: np.ndarray, batch_size: int, max_length: int,
                   pad_id: int, rng: np.random.Generator) -> list[Batch]:
    """The study framework's way, for comparison: random batches, every one padded to max_length."""
    rows = np.asarray(rows, dtype=np.int64)[rng.permutation(len(rows))]
    out = []
    for i in range(0, len(rows), batch_size):
        batch = collate(ids, rows[i:i + batch_size], max_length, pad_id)
        pad = max_length - batch.input_ids.shape[1]
        out.append(Batch(torch.nn.functional.pad(batch.input_ids, (0, pad), value=pad_id),
                         torch.nn.functional.pad(batch.attention_mask, (0, pad)), batch.rows))
    return out


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch tensor on `device`; to a GPU through pinned memory without waiting (a plain copy from
    pageable memory would synchronise the host with the GPU every step). On the CPU: the tensor itself."""
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def batch_loss(model, batch: Batch, device: torch.device) -> tuple[torch.Tensor, int]:
    """Mean loss per predicted token of one batch (a tensor, for backward) and the token count."""
    input_ids = to_device(batch.input_ids, device)
    mask = to_device(batch.attention_mask, device)
    labels = input_ids.masked_fill(mask == 0, -100)
    out = model(input_ids=input_ids, attention_mask=mask, labels=labels)
    return out.loss, batch.num_predicted


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    raise ValueError(f"optimizer must be one of adamw, sgd; got {name!r}")


@dataclass(frozen=True)
class TrainResult:
    train_loss: float  # token-weighted mean over the last local epoch (nan if it diverged)
    steps: int
    tokens: int  # real (non-pad) tokens processed
    seconds: float


@dataclass(frozen=True)
class StepHooks:
    """Additions to every local step, so a federated strategy can change local training without
    this loop knowing it: `loss_term()` is added to the batch loss before backward (FedProx's
    proximal term); `grad_hook()` runs after backward, before the optimizer step (SCAFFOLD's
    gradient correction). The reported training loss stays the plain data loss."""

    loss_term: Callable[[], torch.Tensor] | None = None
    grad_hook: Callable[[], None] | None = None


def train_local(model, params: list[torch.nn.Parameter], batches_per_epoch: Callable[[int], list[Batch]],
                epochs: int, optimizer: str, lr: float, device: torch.device,
                on_step: Callable[[float | None], None] | None = None,
                hooks: StepHooks = StepHooks(), read_every_step: bool | None = None) -> TrainResult:
    """E local epochs of plain minibatch training on the given batches; fresh optimizer.

    The epoch's token-weighted loss is summed on the device (in float64, the same arithmetic as
    Python floats), so a GPU never waits for the host: the loss is read back once per epoch there,
    and a non-finite loss is noticed at the epoch's end (on the CPU, where a read is free, after
    the step that diverged, and `on_step` gets every step's loss; on a GPU it gets None).
    `read_every_step` overrides that choice (None: by the device)."""
    opt = make_optimizer(optimizer, params, lr)
    model.train()
    start, steps, tokens = time.perf_counter(), 0, 0
    read_every_step = device.type != "cuda" if read_every_step is None else read_every_step
    loss_sum, loss_tokens = torch.zeros((), dtype=torch.float64, device=device), 0
    for epoch in range(epochs):
        loss_sum, loss_tokens = torch.zeros((), dtype=torch.float64, device=device), 0
        finite = torch.ones((), dtype=torch.bool, device=device)
        for batch in batches_per_epoch(epoch):
            loss, n = batch_loss(model, batch, device)
            opt.zero_grad(set_to_none=True)
            objective = loss if hooks.loss_term is None else loss + hooks.loss_term()
            objective.backward()
            if hooks.grad_hook is not None:
                hooks.grad_hook()
            opt.step()
            loss = loss.detach()
            loss_sum, loss_tokens = loss_sum + loss.double() * n, loss_tokens + n
            steps, tokens = steps + 1, tokens + batch.num_real
            value = float(loss) if read_every_step else None
            if on_step is not None:
                on_step(value)
            if value is None:
                finite &= torch.isfinite(loss)
            elif not math.isfinite(value):
                return TrainResult(float("nan"), steps, tokens, time.perf_counter() - start)
        if not read_every_step and not bool(finite):  # one read an epoch on a GPU
            return TrainResult(float("nan"), steps, tokens, time.perf_counter() - start)
    model.eval()
    mean = float(loss_sum) / loss_tokens if loss_tokens else float("nan")
    return TrainResult(mean, steps, tokens, time.perf_counter() - start)


@torch.no_grad()
def evaluate(model, batches: list[Batch], device: torch.device,
             on_batch: Callable[[], None] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-example summed loss and predicted-token counts over batches: (rows, loss_sums, tokens).

    Callers group by example (global test set, or one client's local test split) and divide.
    """
    model.eval()
    all_rows, all_sums, all_tokens = [], [], []  # sums and tokens stay on the device until the end
    for batch in batches:
        input_ids = to_device(batch.input_ids, device)
        mask = to_device(batch.attention_mask, device)
        logits = model(input_ids=input_ids, attention_mask=mask).logits[:, :-1]
        targets = input_ids[:, 1:]
        token_mask = mask[:, 1:].bool()
        flat = logits.reshape(-1, logits.shape[-1]).float()  # contiguous rows: fast cross-entropy
        losses = torch.nn.functional.cross_entropy(flat, targets.reshape(-1), reduction="none")
        losses = losses.view(targets.shape) * token_mask
        all_rows.append(batch.rows)
        all_sums.append(losses.sum(dim=1).double())
        all_tokens.append(token_mask.sum(dim=1))
        if on_batch is not None:
            on_batch()
    if not all_rows:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64)
    return (np.concatenate(all_rows), torch.cat(all_sums).cpu().numpy(),  # one copy to the host
            torch.cat(all_tokens).cpu().numpy())
