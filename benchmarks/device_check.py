"""GPU device check: speed, identity, resume and memory of cllora's training step, in a few minutes.

    PYTHONPATH=src python benchmarks/device_check.py       (or benchmarks/device_check.sh, make device-check)

Needs only the repository, torch, transformers and peft: no network, no embedded weights. The model is
a RANDOMLY INITIALISED model of the SmolLM2-135M architecture (benchmarks/configs/smollm2-135m.json,
the embedded model's own config), trained with cllora's own LoRA attach (r=8 on q/v) and local loop
(cllora.train.train_local) on random token ids in batches of 8 texts of 16-128 tokens grouped by
length, as the study's presets train. Random weights compute exactly as fast as trained ones, and
identity does not depend on what the weights are.

It prints: the device, the precision `auto` picks there and whether TF32 is on; steps/s with
cllora's deterministic settings and with the fast (non-deterministic) attention kernels; the share of
the card's dense bf16 peak (4 N FLOPs per real token: forward, and backward through the frozen base);
whether two runs of the same seed are bit-identical (and their largest difference); whether a run
resumed from a checkpoint is identical to one that went straight through (the engine's resume: each
round starts from the saved fp32 adapter with a fresh optimizer, seeds derived from the round);
peak GPU memory against cllora's estimate (cllora.device.cell_memory_bytes); and the estimated hours
of each full preset on this card. Without a usable CUDA GPU it says so and exits with code 77.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from cllora import device as dev  # noqa: E402

CONFIG = ROOT / "benchmarks" / "configs" / "smollm2-135m.json"
# --cpu-dry-run: the same code on the CPU with a 2-layer model and few steps, to check the script
# itself on a machine without a GPU (its numbers mean nothing)
DRY = "--cpu-dry-run" in sys.argv
DEVICE = "cpu" if DRY else "cuda"
SCALE = 0.1 if DRY else 1.0
NO_ACCELERATOR = 77
BATCH, MAX_LEN, PAD = 8, 128, 2
# dense bf16 tensor-core peak, TFLOP/s, by a piece of the device name (first match wins)
BF16_PEAK = [("H200", 989.4), ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4), ("GH200", 989.4),
             ("B200", 2250.0), ("A100", 312.0), ("L40S", 362.0), ("L40", 181.0), ("A10G", 70.0), ("A10", 125.0),
             ("L4", 121.0), ("RTX 4090", 165.2), ("RTX 3090", 71.0)]
# counted work of each full preset (TFLOP, cllora.sweep.estimate's convention: 4N per trained token and
# 2N per scored one, every text at its max_length), counted on 2026-12-06; recounted live where the
# sweep modules import (they need cllora's full dependencies)
PRESET_TFLOP = {"study-aggregation": 7713, "study-length": 3085, "study-local": 7057, "study-natural": 1570,
                "study-null": 9255, "study-privacy": 141929, "study-quantity": 5564, "study-strategies": 16197}


def build_model(precision: str):
    from transformers import AutoConfig, AutoModelForCausalLM

    from cllora.model import attach_lora

    values = json.loads(CONFIG.read_text())
    config = AutoConfig.for_model(values.pop("model_type"), **values)
    torch.manual_seed(0)
    with torch.device(DEVICE):
        model = AutoModelForCausalLM.from_config(config, dtype=dev.DTYPES[precision])
    model.requires_grad_(False)
    model.config.use_cache = False
    torch.manual_seed(1)
    return attach_lora(model, 8, 16.0, 0.0, ("q_proj", "v_proj"))


def batches_for(seed: int, count: int, vocab: int):
    from cllora.train import length_grouped_batches

    rng = np.random.default_rng(seed)
    ids = [rng.integers(3, vocab, size=int(n)) for n in rng.integers(16, MAX_LEN + 1, size=count * BATCH)]
    return length_grouped_batches(ids, np.arange(len(ids)), BATCH, MAX_LEN, PAD, np.random.default_rng(seed + 1))


def train(model, batches, epochs: int = 1):
    from cllora.model import lora_parameters
    from cllora.train import train_local

    params = list(lora_parameters(model).values())
    return train_local(model, params, lambda e: batches, epochs, "adamw", 5e-4, torch.device(DEVICE))


def adapter(model) -> dict:
    from cllora.model import get_adapter_state

    return get_adapter_state(model)


def max_diff(a: dict, b: dict) -> tuple[bool, float]:
    same = all(torch.equal(a[k], b[k]) for k in a)
    return same, max(float((a[k] - b[k]).abs().max()) for k in a)


def rounds(model, start: dict, first: int, last: int, vocab: int) -> dict:
    """Rounds first..last as the engine runs them: from the fp32 adapter, fresh optimizer, seeds by round."""
    from cllora.model import set_adapter_state

    state = start
    for r in range(first, last + 1):
        set_adapter_state(model, state)
        torch.manual_seed(1000 + r)
        train(model, batches_for(r, n(10), vocab))
        state = adapter(model)  # what the checkpoint saves
    return state


def steps_per_second(model, batches, repeat: int = 3) -> tuple[float, int]:
    """(steps/s, real tokens a step) over `repeat` epochs of `batches`, after one warm-up epoch."""
    train(model, batches)
    sync()
    start = time.perf_counter()
    result = train(model, batches, repeat)
    sync()
    return result.steps / (time.perf_counter() - start), result.tokens // result.steps


def preset_hours(seconds_per_tflop: float) -> dict[str, float]:
    counted = dict(PRESET_TFLOP)
    try:
        from cllora.sweep.estimate import cell_tflop
        from cllora.sweep.grid import expand
        from cllora.sweep.run import load_spec, preset_names

        counted = {p: sum(cell_tflop(c) or 0.0 for c in expand(load_spec(preset=p))) for p in preset_names()}
    except Exception as exc:  # the sweep modules need rich, flwr-datasets, ...: use the recorded counts
        print(f"  (preset work as counted on 2026-12-06; live count unavailable: {type(exc).__name__})")
    return {p: t * seconds_per_tflop / 3600 for p, t in counted.items()}


def sync() -> None:
    if not DRY:
        torch.cuda.synchronize()


def n(count: int) -> int:
    return max(2, int(count * SCALE))


def main() -> int:
    reason = dev.cuda_unusable_reason()
    if DRY:
        return dry_run()
    if reason is not None:
        print(f"device check: no accelerator ({reason}); nothing measured. Run it on a machine with a "
              "CUDA GPU: benchmarks/device_check.sh")
        return NO_ACCELERATOR
    gpu = torch.device("cuda")
    precision = dev.resolve_precision("auto", gpu)
    dev.configure(gpu, precision)
    name = torch.cuda.get_device_name(gpu)
    record = dev.describe(gpu, precision)
    print(f"device: {name} (capability {'.'.join(map(str, dev.cuda_capability(gpu)))}), torch "
          f"{torch.__version__}, CUDA {torch.version.cuda}")
    print(f"precision: {precision} (auto), TF32 {'on' if record['tf32'] else 'off'}, deterministic "
          f"kernels on (math attention)")
    model = build_model(precision)
    vocab = model.config.vocab_size
    params = sum(p.numel() for p in model.parameters())
    bench = batches_for(0, n(40), vocab)
    torch.cuda.reset_peak_memory_stats()
    try:
        det_rate, tokens = steps_per_second(model, bench)
    except RuntimeError as exc:  # an op with no deterministic kernel: say so, measure the rest
        print(f"DETERMINISTIC MODE FAILED: {str(exc).splitlines()[0]}")
        torch.use_deterministic_algorithms(True, warn_only=True)
        det_rate, tokens = steps_per_second(model, bench)
    peak = torch.cuda.max_memory_allocated()
    peak_tflops = next((p for key, p in BF16_PEAK if key in name), None)
    real = det_rate * 4 * params * tokens / 1e12
    share = f"{100 * real / peak_tflops:.1f} % of the {peak_tflops:g} TFLOP/s bf16 peak" if peak_tflops \
        else "bf16 peak of this card not in the table"
    print(f"steps/s (deterministic): {det_rate:.1f}  ({tokens} real tokens a step, {real:.1f} TFLOP/s, {share})")

    for switch in ("enable_flash_sdp", "enable_mem_efficient_sdp"):
        getattr(torch.backends.cuda, switch)(True)
    torch.use_deterministic_algorithms(False)
    fast_rate, _ = steps_per_second(model, bench)
    print(f"steps/s (flash/mem-efficient attention, not deterministic): {fast_rate:.1f} "
          f"(determinism costs {100 * (1 - det_rate / fast_rate):.0f} %)")
    dev.configure(gpu, precision)

    start = adapter(model)
    runs = []
    for _ in range(2):
        from cllora.model import set_adapter_state

        set_adapter_state(model, start)
        torch.manual_seed(7)
        train(model, batches_for(3, n(20), vocab), epochs=2)
        runs.append(adapter(model))
    same, diff = max_diff(*runs)
    print(f"same seed twice identical: {'yes' if same else 'NO'} (max difference {diff:.3g})")
    straight = rounds(model, start, 1, 3, vocab)
    model = None
    torch.cuda.empty_cache()
    model = build_model(precision)  # a fresh process's model: resume from round 1's checkpoint
    resumed = rounds(model, rounds(model, start, 1, 1, vocab), 2, 3, vocab)
    same, diff = max_diff(straight, resumed)
    print(f"resume identical: {'yes' if same else 'NO'} (max difference {diff:.3g})")

    estimate = dev.cell_memory_bytes(params, precision, batch=BATCH, length=MAX_LEN, vocab=vocab,
                                     layers=model.config.num_hidden_layers, hidden=model.config.hidden_size)
    print(f"peak GPU memory: {peak / 2**30:.2f} GiB allocated (cllora's estimate for sharing a GPU: "
          f"{estimate / 2**30:.2f} GiB)")
    counted_per_s = det_rate * 4 * params * BATCH * MAX_LEN / 1e12  # the estimate's convention
    print("estimated hours of each full preset on this card, one cell at a time, deterministic:")
    for preset, hours in preset_hours(1 / counted_per_s).items():
        print(f"  {preset:<20} {hours:7.2f} h")
    return 0


def dry_run() -> int:
    """The check's own code on the CPU with 2 layers (tests/test_device_check.py runs it)."""
    global CONFIG
    values = json.loads(CONFIG.read_text())
    values["num_hidden_layers"] = 2
    small = Path(__import__("tempfile").mkdtemp()) / "config.json"
    small.write_text(json.dumps(values))
    CONFIG = small
    model = build_model("fp32")
    vocab = model.config.vocab_size
    rate, tokens = steps_per_second(model, batches_for(0, n(40), vocab), repeat=1)
    start = adapter(model)
    straight = rounds(model, start, 1, 3, vocab)
    resumed = rounds(build_model("fp32"), rounds(model, start, 1, 1, vocab), 2, 3, vocab)
    same, diff = max_diff(straight, resumed)
    hours = preset_hours(1.0)
    print(f"cpu dry run: {rate:.1f} steps/s, {tokens} tokens a step, resume identical: "
          f"{'yes' if same else 'NO'} ({diff:.3g}), {len(hours)} presets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
