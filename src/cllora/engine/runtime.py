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
    fallback: str | None = None  # why device "auto" runs on the CPU (None: it did not fall back)

    def record(self) -> dict:
        """What this run computes on, for config.json (cllora.device.describe)."""
        from cllora.device import describe  # lazy: torch

        return describe(self.device, self.precision, self.fallback)

    def load_base(self, config: RunConfig, log: Callable[[str], None] = print):
        """The frozen base model, loaded once."""
        if self.model is None:
            from cllora.model import load_model  # lazy: torch, transformers

            self.model = load_model(config.model, self.device, self.precision, log=log)
        return self.model


def resolve(config: RunConfig) -> tuple[Any, str]:
    """(device, precision) the config resolves to on this machine ("auto" made concrete; a CPU
    fallback of device auto and an emulated bf16 are said on stderr, cllora.device)."""
    from cllora.device import precision_note, resolve_device, resolve_precision, warn  # lazy: torch

    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    note = precision_note(precision, device)
    if note:
        warn(note)
    return device, precision


def fallback_reason(config: RunConfig, device) -> str | None:
    """Why device auto resolved to the CPU here (None where it was not auto or took the GPU)."""
    from cllora.device import cuda_unusable_reason  # lazy: torch

    return cuda_unusable_reason() if config.device == "auto" and device.type == "cpu" else None


def build_runtime(config: RunConfig, *, base_model=None, tokenizer=None, load_model: bool = True,
                  log: Callable[[str], None] = print) -> Runtime:
    """Resolve device and precision, load (or reuse) the tokenizer and, with `load_model`, the base
    model. A passed-in base model must be in the config's resolved precision and free of LoRA."""
    from cllora.device import configure  # lazy: torch
    from cllora.model import load_tokenizer  # lazy: torch, transformers

    device, precision = resolve(config)
    configure(device, precision)  # on CUDA: TF32 for fp32 where native, deterministic kernels
    runtime = Runtime(device, precision, tokenizer or load_tokenizer(config.model, log=log), base_model,
                      fallback_reason(config, device))
    if base_model is not None:
        check_base_model(base_model, precision)
    elif load_model:
        runtime.load_base(config, log)
    return runtime


def check_base_model(model, precision: str) -> None:
    """A reused base model must match the resolved precision and carry no LoRA layers."""
    from cllora.model import DTYPES, is_lora_name  # lazy: torch, transformers

    dtype = next(model.parameters()).dtype
    if dtype != DTYPES[precision]:
        raise ValueError(f"the base model passed in is {dtype}, but the config resolves to {precision}")
    if any(is_lora_name(n) for n, _ in model.named_parameters()):
        raise ValueError("the base model passed in still carries LoRA layers (release the last run first)")


def config_memory_bytes(config: RunConfig, precision: str) -> int:
    """GPU memory of one run of `config` (bytes), estimated by `cllora.device.cell_memory_bytes` from
    the model's architecture (its config only, no weights)."""
    from cllora.device import cell_memory_bytes  # lazy: torch
    from cllora.engine.experiment import eval_batch_size  # lazy: torch
    from cllora.model import load_config_only  # lazy: torch, transformers

    arch = load_config_only(config.model)
    text = getattr(arch, "text_config", arch)  # multimodal configs (Gemma 3) nest the language model
    hidden, layers, vocab = text.hidden_size, text.num_hidden_layers, text.vocab_size
    inner = getattr(text, "intermediate_size", None) or getattr(text, "ffn_dim", 4 * hidden)
    params = vocab * hidden + layers * (4 * hidden * hidden + 3 * hidden * inner)
    batch = max(config.batch_size, eval_batch_size(config))
    return cell_memory_bytes(params, precision, batch=batch, length=max(config.max_length, config.eval_length),
                             vocab=vocab, layers=layers, hidden=hidden)


def local_gpu_bytes() -> int | None:
    """Memory of this machine's first CUDA GPU (bytes), or None without one."""
    import torch  # lazy: the runtime module is imported before torch is needed

    if not torch.cuda.is_available():
        return None
    return int(torch.cuda.get_device_properties(0).total_memory)


def default_gpu_share(configs: list[RunConfig]) -> tuple[float, str]:
    """(share of a GPU one run declares, a note saying why), for runs that share this machine's GPU
    (a Ray sweep's cells, Flower's virtual clients): 1/k where k of the largest fit (cllora.device);
    1.0 where no GPU is seen here to size them by."""
    from cllora.device import gpu_fraction  # lazy: torch

    total = local_gpu_bytes()
    if total is None:
        return 1.0, "one GPU each: no GPU is seen here to size the share by"
    need = max(config_memory_bytes(c, c.precision if c.precision != "auto" else "fp32") for c in configs)
    share = gpu_fraction(need, total)
    return share, (f"{round(1 / share)} a GPU: about {need / 2**30:.1f} GiB each estimated on "
                   f"{total / 2**30:.0f} GiB")
