"""The runtime of a run: device, precision, tokenizer and frozen base model, built in one place.

`cllora run`, `cllora sweep`, `cllora demo` and the Flower ClientApp all call `build_runtime`,
so a setting such as `precision = "auto"` resolves the same way everywhere, and a base model
handed in for reuse (a sweep's next cell) is checked against the config before it is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from cllora.config.settings import RunConfig


@dataclass
class Runtime:
    """What a run computes on: resolved device and precision, tokenizer, frozen base model."""

    device: Any  # torch.device
    precision: str  # "fp32" or "bf16" (never "auto")
    tokenizer: Any
    model: Any = None  # None until load_base() (a Flower query needs no model)

    def load_base(self, config: RunConfig, log: Callable[[str], None] = print):
        """The frozen base model, loaded once."""
        if self.model is None:
            from cllora.model import load_model  # lazy: torch, transformers

            self.model = load_model(config.model, self.device, self.precision, log=log)
        return self.model


def resolve(config: RunConfig) -> tuple[Any, str]:
    """(device, precision) the config resolves to on this machine ("auto" made concrete)."""
    from cllora.model import resolve_device, resolve_precision  # lazy: torch, transformers

    device = resolve_device(config.device)
    return device, resolve_precision(config.precision, device)


def build_runtime(config: RunConfig, *, base_model=None, tokenizer=None, load_model: bool = True,
                  log: Callable[[str], None] = print) -> Runtime:
    """Resolve device and precision, load (or reuse) the tokenizer and, with `load_model`, the base
    model. A passed-in base model must be in the config's resolved precision and free of LoRA."""
    from cllora.model import load_tokenizer  # lazy: torch, transformers

    device, precision = resolve(config)
    if device.type == "cuda":
        make_cuda_deterministic()
    runtime = Runtime(device, precision, tokenizer or load_tokenizer(config.model, log=log), base_model)
    if base_model is not None:
        check_base_model(base_model, precision)
    elif load_model:
        runtime.load_base(config, log)
    return runtime


def make_cuda_deterministic() -> None:
    """"Same config + seed → same results" on a GPU too: deterministic cuBLAS workspaces and
    kernels (an op with no deterministic kernel warns rather than fails). Limit: results are
    reproducible on the same GPU model, driver and library versions, not across them."""
    import os

    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)


def check_base_model(model, precision: str) -> None:
    """A reused base model must match the resolved precision and carry no LoRA layers."""
    from cllora.model import DTYPES, is_lora_name  # lazy: torch, transformers

    dtype = next(model.parameters()).dtype
    if dtype != DTYPES[precision]:
        raise ValueError(f"the base model passed in is {dtype}, but the config resolves to {precision}")
    if any(is_lora_name(n) for n, _ in model.named_parameters()):
        raise ValueError("the base model passed in still carries LoRA layers (release the last run first)")
