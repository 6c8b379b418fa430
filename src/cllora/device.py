"""Where a run computes and how: device, precision by capability, TF32, CUDA determinism, and the record.

One place for every rule about the hardware (torch only, no transformers):
- `--device auto` takes CUDA when torch can use a GPU, else the CPU, and then SAYS why (a GPU seen
  by the driver but a CPU build of torch, CUDA_VISIBLE_DEVICES hiding it, no GPU at all); the reason
  goes to stderr and into config.json (`device_fallback`).
- `--precision auto` takes bf16 only where it is computed natively: on CUDA compute capability >= 8.0
  (Ampere and later; `torch.cuda.is_bf16_supported()` is also true where bf16 is emulated, e.g. V100,
  T4), on CPUs with AMX/AVX512-BF16; else fp32 (cllora has no fp16 path: fp16 base weights would need
  a loss scaler and risk overflow, so older cards train in fp32, slower but exact).
- fp32 runs on CUDA compute capability >= 8.0 use TF32 matmuls (10-bit mantissa inputs, fp32
  accumulation); the record says so (`tf32`).
- A CUDA run is made bit-identical to itself: deterministic algorithms with no `warn_only` (an op
  without a deterministic kernel raises), a fixed cuBLAS workspace, and the math SDPA backend (the
  flash / memory-efficient / cuDNN attention backward kernels are not deterministic).
  Limit: identical on the same card model, driver and library versions, not across them.
- GPU sharing: a cell of the study's size (a 135M model, 8 texts of <= 128 tokens a step) uses a few
  GiB of an 80 GiB card and about 5 ms of its math a step, so one cell (or Flower client) per GPU
  leaves it mostly idle. By default each declares 1/k of a GPU where k fit in its memory (at most
  MAX_CELLS_PER_GPU, beyond which they mostly queue for the same compute). A cell's memory is
  estimated from the model's architecture: base weights, the fp32 logits of the largest batch with
  their gradient, the activations kept for backward and a CUDA context, times a safety margin;
  benchmarks/device_check.py measures the real peak to check it against.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
from pathlib import Path
from typing import Callable

import torch

from cllora.errors import UserError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
NATIVE_BF16_CAPABILITY = (8, 0)  # Ampere: bf16 tensor cores; also where TF32 begins
CUBLAS_WORKSPACE = ":4096:8"


def cuda_unusable_reason() -> str | None:
    """None when torch can use a CUDA GPU; else a sentence saying why not."""
    if torch.cuda.is_available():
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU from this process"
    if gpu_seen_by_driver():
        if torch.version.cuda is None:
            return (f"an NVIDIA GPU is present but this torch ({torch.__version__}) is a CPU build; "
                    "install the CUDA build (see the README's GPU section)")
        return (f"an NVIDIA GPU is present but torch {torch.__version__} (CUDA {torch.version.cuda}) "
                "cannot use it (driver too old for this CUDA build, or the GPU is busy or in a bad state)")
    return "no CUDA GPU found"


def gpu_seen_by_driver() -> bool:
    """True when the NVIDIA driver shows a GPU (device files or nvidia-smi), whatever torch says."""
    return Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi") is not None


_WARNED: set[str] = set()


def warn(message: str) -> None:
    """A fallback the user must see: stderr, whatever the run's own log does (once per process)."""
    if message not in _WARNED:
        _WARNED.add(message)
        print(f"cllora: warning: {message}", file=sys.stderr, flush=True)


def resolve_device(device: str = "auto", warn: Callable[[str], None] = warn) -> torch.device:
    """The device a setting means here; `auto` falls back to the CPU only loudly (`warn`)."""
    if device not in ("auto", "cpu", "cuda"):
        raise UserError(f"device must be one of auto, cpu, cuda; got {device!r}")
    if device == "cpu":
        return torch.device("cpu")
    reason = cuda_unusable_reason()
    if reason is None:
        return torch.device("cuda")
    if device == "cuda":
        raise UserError(f"device 'cuda' was asked for but CUDA is not usable: {reason}; "
                         "use --device cpu or auto")
    warn(f"--device auto runs on the CPU: {reason}")
    return torch.device("cpu")


def cpu_has_fast_bf16() -> bool:
    """True on CPUs with AMX or AVX512-BF16 (bf16 matmuls several times faster than fp32)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def cuda_capability(device: torch.device) -> tuple[int, int]:
    return tuple(torch.cuda.get_device_capability(device))  # type: ignore[return-value]


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 is computed natively (not emulated) on `device`."""
    if device.type == "cuda":
        return cuda_capability(device) >= NATIVE_BF16_CAPABILITY
    return cpu_has_fast_bf16()


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' → 'bf16' where bf16 is native (CUDA capability >= 8.0, AMX/AVX512-BF16 CPUs), else 'fp32'."""
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device) else "fp32"


def precision_note(precision: str, device: torch.device) -> str | None:
    """A warning for an explicit bf16 on a device that only emulates it (slow), else None."""
    if precision == "bf16" and device.type == "cuda" and not native_bf16(device):
        major, minor = cuda_capability(device)
        return (f"bf16 on a GPU of compute capability {major}.{minor} is emulated and slow; "
                "--precision auto would train in fp32 there")
    return None


def uses_tf32(precision: str, device: torch.device) -> bool:
    """fp32 runs on CUDA capability >= 8.0 use TF32 matmuls (the rule; `configure` applies it)."""
    return device.type == "cuda" and precision == "fp32" and cuda_capability(device) >= NATIVE_BF16_CAPABILITY


def configure(device: torch.device, precision: str) -> None:
    """Apply the device's settings for a run: on CUDA, TF32 by `uses_tf32` and determinism."""
    if device.type != "cuda":
        return
    tf32 = uses_tf32(precision, device)
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    make_cuda_deterministic()


def make_cuda_deterministic() -> None:
    """Same config + seed → bit-identical results on a GPU (see the module docstring)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True)
    for name in ("enable_flash_sdp", "enable_mem_efficient_sdp", "enable_cudnn_sdp"):
        switch = getattr(torch.backends.cuda, name, None)  # cudnn SDPA exists from torch 2.3
        if switch is not None:
            switch(False)
    torch.backends.cuda.enable_math_sdp(True)


def describe(device: torch.device, precision: str, fallback: str | None = None) -> dict:
    """What a run computed on, for config.json and the report: device, its name, precision, TF32,
    determinism, torch and CUDA versions, and why `auto` fell back to the CPU (None if it did not)."""
    cuda = device.type == "cuda"
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if cuda else cpu_name(),
        "precision": precision,
        "tf32": uses_tf32(precision, device),
        "deterministic": cuda,  # CPU kernels are deterministic as they are
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "device_fallback": fallback,
    }


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (or 'cpu')."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "cpu"


# ---------------------------------------------------------------- sharing a GPU

CUDA_CONTEXT = 600 * 2**20  # the CUDA context and cuBLAS workspaces of one process
ACTIVATION_BYTES = 34  # bytes kept per layer, token and hidden unit for backward (bf16, Llama-like)
LOGIT_COPIES = 3  # fp32 logits, their softmax and its gradient
SAFETY = 1.3
MAX_CELLS_PER_GPU = 8
RAY_STEPS = 10_000  # Ray's resolution for fractional resources: 1e-4


def cell_memory_bytes(params: int, precision: str, *, batch: int, length: int, vocab: int,
                      layers: int, hidden: int) -> int:
    """Peak GPU memory of one cell (bytes), by the formula in the module docstring."""
    if precision not in DTYPES:
        raise ValueError(f"precision must be fp32 or bf16 to estimate memory, got {precision!r}")
    weights = params * DTYPES[precision].itemsize
    logits = batch * length * vocab * 4 * LOGIT_COPIES
    activations = layers * batch * length * hidden * ACTIVATION_BYTES * DTYPES[precision].itemsize // 2
    return int(SAFETY * (weights + logits + activations) + CUDA_CONTEXT)


def gpu_fraction(need_bytes: int, gpu_bytes: int, max_cells: int = MAX_CELLS_PER_GPU) -> float:
    """The share of a GPU one cell declares: 1/k for the k = min(max_cells, cells that fit) cells
    that share it, cut to Ray's resolution of 1e-4; 1.0 where at most one fits."""
    if need_bytes <= 0 or gpu_bytes <= 0:
        raise ValueError(f"memory must be positive, got need {need_bytes} and GPU {gpu_bytes} bytes")
    fit = max(1, min(max_cells, gpu_bytes // need_bytes))
    return math.floor(RAY_STEPS / fit) / RAY_STEPS
