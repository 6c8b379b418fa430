"""One experiment's ingredients, shared by the in-process and the Flower engines.

`prepare_data` turns a config into tokenized texts, length classes and a partition;
`prepare_experiment` adds the model with a fresh LoRA adapter and the evaluation batches;
`sample_clients` draws a round's clients. What a client does is `cllora.engine.client`; how an
adapter is scored is `cllora.engine.evaluation`. Randomness is derived from (seed, purpose,
round, client), so any round can be re-run on its own: resuming needs no saved RNG state and both
engines sample the same.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from cllora import partition as part
from cllora.aggregate.lora_math import merged_base
from cllora.config.settings import RunConfig
from cllora.data import load_corpus, tokenize_texts
from cllora.errors import UserError
from cllora.model import pad_id
from cllora.partition.stats import partition_to_dict
from cllora.ranks import client_ranks
from cllora.seeds import stream, torch_seed
from cllora.train import Batch, length_grouped_batches

EVAL_BATCH_FLOOR = 8  # texts per evaluation batch at least: no gradients are kept, so bigger is cheaper


def eval_batch_size(config: RunConfig) -> int:
    """Texts per evaluation batch: the training batch size, but at least EVAL_BATCH_FLOOR."""
    return max(config.batch_size, EVAL_BATCH_FLOOR)



@dataclass
class Data:
    """Tokenized corpus, length classes and the clients' (local train, local test) rows."""

    train_ids: list[np.ndarray]
    test_ids: list[np.ndarray]
    lengths: np.ndarray  # full token length of each training text (the length measure)
    labels: np.ndarray  # length class of each training text
    class_edges: np.ndarray
    partition: "part.Partition"
    client_train: list[np.ndarray]
    client_test: list[np.ndarray]
    pad_id: int
    dropped_empty: int = 0
    notes: tuple[str, ...] = ()
    test_classes: np.ndarray | None = None  # length class of each global test text (training edges)

    def partition_dict(self, config: RunConfig) -> dict:
        out = partition_to_dict(self.partition, self.labels, scheme=config.scheme,
                                alpha=config.alpha, seed=config.seed,
                                num_classes=config.num_classes, class_edges=self.class_edges,
                                length_measure=config.length_measure, client_key=config.client_key)
        for client, train_rows, test_rows in zip(out["clients"], self.client_train, self.client_test):
            client["local_train_indices"] = train_rows.tolist()
            client["local_test_indices"] = test_rows.tolist()
        return out

    def truncation(self, max_length: int) -> dict:
        """Share of training texts longer than max_length, overall and per length class."""
        cut = self.lengths > max_length
        per_class = [float(cut[self.labels == c].mean()) if np.any(self.labels == c) else 0.0
                     for c in range(len(self.class_edges) + 1)]  # every class, even an empty top one
        return {"max_length": max_length, "overall": float(cut.mean()), "per_class": per_class}


@contextlib.contextmanager
def user_values():
    """The pure core checks its arguments with ValueError; where those arguments are the user's
    config values (alpha, client sizes, class edges), the error is the user's: say it as one."""
    try:
        yield
    except UserError:
        raise
    except ValueError as exc:
        raise UserError(str(exc)) from None


def prepare_data(config: RunConfig, tokenizer, log: Callable[[str], None] = print) -> Data:

    corpus = load_corpus(config.dataset, config.text_column, config.test_fraction,
                         stream(config.seed, "corpus"), config.max_train_examples, config.max_test_examples,
                         group_key=config.client_key if config.scheme == "natural" else None)
    train_ids = tokenize_texts(corpus.train, tokenizer)
    test_ids = tokenize_texts(corpus.test, tokenizer)
    lengths = np.array([len(x) for x in train_ids], dtype=np.int64)
    measure = lengths if config.length_measure == "tokens" else part.sentence_counts(corpus.train)
    if config.clients > len(corpus.train):
        raise UserError(f"clients ({config.clients}) is more than the {len(corpus.train)} training "
                        f"texts of {config.dataset!r}")
    with user_values():
        labels, edges = part.length_classes(measure, config.num_classes, config.class_edges)
        partition = part.make_partition(config.scheme, labels, config.clients,
                                        stream(config.seed, "partition"), alpha=config.alpha,
                                        num_classes=config.num_classes, client_size=config.client_size,
                                        min_client_size=config.min_client_size,
                                        groups=corpus.train_groups, key=f"client key {config.client_key!r}",
                                        merge_small=config.small_groups == "merge")
    split_rng = stream(config.seed, "local_split")
    splits = [part.split_local(rows, config.local_test_fraction, split_rng) for rows in partition.clients]
    check_local_test_sizes([len(s[1]) for s in splits], config.min_local_test, log)
    pad = pad_id(tokenizer)
    test_measure = [len(x) for x in test_ids] if config.length_measure == "tokens" \
        else part.sentence_counts(corpus.test)
    return Data(train_ids, test_ids, lengths, labels, np.asarray(edges), partition,
                [s[0] for s in splits], [s[1] for s in splits], pad,
                corpus.dropped_empty, tuple(partition.notes),
                test_classes=classes_by_edges(test_measure, config.num_classes, edges))


def classes_by_edges(measure, num_classes: int, edges) -> np.ndarray:
    """Length class of texts (by full length) under given class edges: the training convention."""
    if len(measure) == 0:
        return np.zeros(0, np.int64)
    return part.length_classes(measure, num_classes, np.asarray(edges, dtype=float))[0]


def check_local_test_sizes(sizes: list[int], minimum: int | None, log: Callable[[str], None]) -> None:
    """--min-local-test: a warning naming the clients whose local test split is smaller; a
    UserError when no client's split is that large."""
    if minimum is None or not sizes:
        return
    if minimum > max(sizes):
        raise UserError(f"min_local_test ({minimum}) is larger than every client's local test split "
                        f"(largest: {max(sizes)} texts); lower it or raise local_test_fraction")
    small = [str(cid) for cid, n in enumerate(sizes) if n < minimum]
    if small:
        log(f"warning: {len(small)} client(s) have fewer than {minimum} local test texts, so their "
            f"losses in the fairness columns are mostly noise: {', '.join(small)}")


def prepare_own_data(config: RunConfig, tokenizer, path: str) -> Data:
    """One real client's own texts (a Flower SuperNode's `data-path`): all of them are its data,
    split into local train / local test by config.local_test_fraction (seeded)."""

    corpus = load_corpus(path, config.text_column, config.local_test_fraction,
                         stream(config.seed, "local_split"))
    ids = tokenize_texts(corpus.train + corpus.test, tokenizer)
    lengths = np.array([len(x) for x in ids], dtype=np.int64)
    rows = np.arange(len(ids))
    train, test = rows[:len(corpus.train)], rows[len(corpus.train):]
    pad = pad_id(tokenizer)
    return Data(ids, [], lengths, np.zeros(len(ids), np.int64), np.zeros(0), part.Partition([rows], ()),
                [train], [test], pad, corpus.dropped_empty)


@dataclass
class Experiment:
    config: RunConfig
    data: Data
    model: torch.nn.Module  # the peft-wrapped base model, shared by all simulated clients
    device: torch.device
    precision: str
    initial_state: dict[str, torch.Tensor]
    global_test_batches: list[Batch] = field(default_factory=list)
    local_test_batches: list[Batch] = field(default_factory=list)  # union of all clients' splits
    row_client: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    fp32_base: dict[str, torch.Tensor] | None = None  # master weights for --eval-fp32, on the device
    eval_plan: object = None  # cllora.engine.evaluation.EvalPlan (the union pass), built on first use
    base_originals: dict[str, torch.Tensor] | None = None  # base weights before any merge (FLoRA, FedEx)
    base_total: dict[str, torch.Tensor] | None = None  # the running delta total merged into them
    client_ranks: list[int] = field(default_factory=list)  # each client's LoRA rank (cllora.ranks)

    @property
    def params(self) -> list[torch.nn.Parameter]:
        from cllora.model import lora_parameters  # lazy: torch, transformers

        return list(lora_parameters(self.model).values())


def prepare_experiment(config: RunConfig, base_model, tokenizer, device: torch.device, precision: str,
                       data: Data | None = None, log: Callable[[str], None] = print) -> Experiment:
    """Attach a fresh, seeded LoRA adapter to `base_model` and build the evaluation batches."""
    from cllora.model import attach_lora, get_adapter_state  # lazy: torch, transformers

    data = data or prepare_data(config, tokenizer, log)
    torch.manual_seed(torch_seed(config.seed, "lora_init", replicate=config.replicate))
    check_context(config, base_model, tokenizer)
    model = attach_lora(base_model, config.rank, config.lora_alpha, config.lora_dropout, config.targets)
    eval_size = eval_batch_size(config)
    union = np.concatenate(data.client_test) if data.client_test else np.zeros(0, np.int64)
    row_client = np.full(len(data.train_ids), -1, dtype=np.int64)
    for cid, rows in enumerate(data.client_test):
        row_client[rows] = cid
    sizes = [len(rows) for rows in data.client_train]
    ranks = client_ranks(config.client_ranks, config.rank, config.clients,
                         sizes if len(sizes) == config.clients else None)
    fp32_base = None
    if config.eval_fp32 and precision != "fp32":  # the original fp32 weights, not bf16 upcast
        from cllora.model import is_lora_name, load_model  # lazy: torch, transformers

        reference = attach_lora(load_model(config.model, "cpu", "fp32", log=log), config.rank,
                                config.lora_alpha, config.lora_dropout, config.targets)
        fp32_base = {n: p.detach().to(device) for n, p in reference.named_parameters()  # once
                     if not is_lora_name(n)}
    return Experiment(
        config, data, model, device, precision, get_adapter_state(model),
        length_grouped_batches(data.test_ids, np.arange(len(data.test_ids)), eval_size,
                               config.eval_length, data.pad_id),
        length_grouped_batches(data.train_ids, union, eval_size, config.max_length, data.pad_id),
        row_client, fp32_base, client_ranks=ranks)


def model_context(base_model, tokenizer) -> int | None:
    """The longest input the model takes: its position embeddings, else the tokenizer's limit."""
    context = getattr(getattr(base_model, "config", None), "max_position_embeddings", None)
    if context is None:
        limit = getattr(tokenizer, "model_max_length", None)
        context = limit if isinstance(limit, int) and limit < 10**9 else None
    return context


def check_context(config: RunConfig, base_model, tokenizer) -> None:
    """--max-length and --eval-max-length may not exceed the model's context (checked before
    anything is written)."""
    context = model_context(base_model, tokenizer)
    for name in ("max_length", "eval_max_length"):
        value = getattr(config, name)
        if value is not None and context is not None and value > context:
            raise UserError(f"{name} ({value}) is above the model's context of {context} tokens; "
                            f"use at most {context}")


def merge_into_base(exp: Experiment, total: dict[str, torch.Tensor]) -> None:
    """Set each base weight named in `total` to its original plus that running total of merged
    deltas (FLoRA, FedEx-LoRA): in place on the one shared base model, never from the previous
    merge, so a resume that restores the total gets the same weights. `release` restores them."""

    params = dict(exp.model.named_parameters())
    if exp.base_originals is None:
        exp.base_originals = {n: params[n].detach().clone() for n in total}
    exp.base_total = total
    with torch.no_grad():
        for name, weight in merged_base(exp.base_originals, total).items():
            params[name].copy_(weight)


def release(exp: Experiment):
    """Restore merged base weights, remove the LoRA layers and return the untouched base model
    (for the next sweep cell)."""
    if exp.base_originals:
        params = dict(exp.model.named_parameters())
        with torch.no_grad():
            for name, weight in exp.base_originals.items():
                params[name].copy_(weight)
    return exp.model.unload()


def sample_clients(config: RunConfig, round_num: int) -> list[int]:
    """The k clients of a round: seeded by (seed, round), so every engine and a resume agree."""
    rng = stream(config.seed, "sample", round_num, replicate=config.replicate)
    return sorted(int(c) for c in rng.choice(config.clients, size=config.clients_per_round, replace=False))
