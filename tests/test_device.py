"""Device rules on a machine without a GPU (CUDA, capability and memory mocked): a loud and recorded
CPU fallback, precision by compute capability, TF32 and the deterministic CUDA settings, the
demo's --device, and a training loop that reads the loss from the device no more than it must."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import cllora.device as dev
from cllora.cli import main
from cllora.errors import UserError


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch):
    monkeypatch.setattr(dev, "_WARNED", set())


def no_cuda(monkeypatch, *, driver: bool, cuda_build: str | None = None, visible: str | None = None):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(dev, "gpu_seen_by_driver", lambda: driver)
    monkeypatch.setattr(torch.version, "cuda", cuda_build)
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)


def capability(monkeypatch, major: int, minor: int, *, bf16_supported: bool = True):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (major, minor))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_supported)


# ---------------------------------------------------------------- loud fallback


@pytest.mark.parametrize("driver, build, visible, said", [
    (True, None, None, "is a CPU build"),
    (True, "12.8", None, "cannot use it"),
    (False, None, "", "hides every GPU"),
    (False, None, None, "no CUDA GPU found"),
])
def test_auto_falls_back_to_the_cpu_only_loudly(monkeypatch, capsys, driver, build, visible, said):
    no_cuda(monkeypatch, driver=driver, cuda_build=build, visible=visible)
    assert dev.resolve_device("auto") == torch.device("cpu")
    err = capsys.readouterr().err
    assert "--device auto runs on the CPU" in err and said in err
    dev.resolve_device("auto")
    assert capsys.readouterr().err == ""  # once per process, not once per cell


def test_an_explicit_cpu_is_quiet_and_cuda_without_a_gpu_is_refused(monkeypatch, capsys):
    no_cuda(monkeypatch, driver=True)
    assert dev.resolve_device("cpu") == torch.device("cpu")
    assert capsys.readouterr().err == ""
    with pytest.raises(UserError, match="device 'cuda' was asked for but CUDA is not usable: an NVIDIA GPU "
                                        "is present but this torch .* is a CPU build"):
        dev.resolve_device("cuda")


def test_the_fallback_and_the_hardware_are_recorded_in_config_json(tiny_model, tmp_path, monkeypatch, capsys):
    from test_engine import tiny_config

    from cllora.engine.loop import run_experiment

    no_cuda(monkeypatch, driver=True)
    out = tmp_path / "run"
    run_experiment(tiny_config(tiny_model, rounds=1, device="auto"), out, log=lambda m: None)
    saved = json.loads((out / "config.json").read_text())
    assert "CPU build" in saved["device_fallback"] and saved["device"] == "cpu"
    assert saved["torch_version"] == torch.__version__ and saved["cuda_version"] is None
    assert saved["device_name"] and saved["tf32"] is False and saved["deterministic"] is False
    assert "--device auto runs on the CPU" in capsys.readouterr().err
    from cllora.analysis.runs import hardware_summary, load_runs

    assert "fell back to the CPU: an NVIDIA GPU is present" in hardware_summary(load_runs(out))


# ---------------------------------------------------------------- precision by capability


@pytest.mark.parametrize("cap, expected", [((7, 0), "fp32"), ((7, 5), "fp32"), ((8, 0), "bf16"),
                                           ((8, 6), "bf16"), ((9, 0), "bf16")])
def test_auto_precision_is_bf16_only_where_the_card_computes_it_natively(monkeypatch, cap, expected):
    capability(monkeypatch, *cap, bf16_supported=True)  # torch says "supported" on V100/T4 too (emulated)
    assert dev.resolve_precision("auto", torch.device("cuda")) == expected
    assert dev.resolve_precision("fp32", torch.device("cuda")) == "fp32"


def test_an_explicit_bf16_on_an_emulating_card_is_said(monkeypatch):
    capability(monkeypatch, 7, 0)
    assert "emulated and slow" in dev.precision_note("bf16", torch.device("cuda"))
    capability(monkeypatch, 8, 0)
    assert dev.precision_note("bf16", torch.device("cuda")) is None


@pytest.mark.parametrize("cap, precision, tf32", [((8, 0), "fp32", True), ((9, 0), "fp32", True),
                                                  ((7, 0), "fp32", False), ((8, 0), "bf16", False)])
def test_tf32_for_fp32_runs_from_ampere_on(monkeypatch, cap, precision, tf32):
    capability(monkeypatch, *cap)
    assert dev.uses_tf32(precision, torch.device("cuda")) is tf32
    assert dev.uses_tf32(precision, torch.device("cpu")) is False


# ---------------------------------------------------------------- deterministic CUDA settings


@pytest.fixture
def restore_backends(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    cuda = torch.backends.cuda
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.deterministic,
             torch.backends.cudnn.benchmark, cuda.flash_sdp_enabled(), cuda.mem_efficient_sdp_enabled(),
             cuda.math_sdp_enabled(), cuda.cudnn_sdp_enabled())
    yield
    torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
    cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[2], saved[3]
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[4], saved[5]
    cuda.enable_flash_sdp(saved[6])
    cuda.enable_mem_efficient_sdp(saved[7])
    cuda.enable_math_sdp(saved[8])
    cuda.enable_cudnn_sdp(saved[9])


def test_a_cuda_run_gets_strict_determinism_math_attention_and_tf32(monkeypatch, restore_backends):
    import os

    capability(monkeypatch, 9, 0)
    torch.backends.cuda.matmul.allow_tf32 = False
    dev.configure(torch.device("cuda"), "fp32")
    assert torch.are_deterministic_algorithms_enabled()
    assert not torch.is_deterministic_algorithms_warn_only_enabled()  # an op without one raises
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    cuda = torch.backends.cuda
    assert cuda.math_sdp_enabled() and not cuda.flash_sdp_enabled()
    assert not cuda.mem_efficient_sdp_enabled() and not cuda.cudnn_sdp_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    dev.configure(torch.device("cuda"), "bf16")
    assert not cuda.matmul.allow_tf32  # a bf16 run records tf32 = False and computes so


def test_a_cpu_run_changes_no_backend_setting(restore_backends):
    before = torch.are_deterministic_algorithms_enabled()
    dev.configure(torch.device("cpu"), "fp32")
    assert torch.are_deterministic_algorithms_enabled() == before


def test_the_cuda_record_names_the_card(monkeypatch):
    capability(monkeypatch, 9, 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    record = dev.describe(torch.device("cuda"), "fp32")
    assert record == {"device": "cuda", "device_name": "NVIDIA H100 80GB HBM3", "precision": "fp32",
                      "tf32": True, "deterministic": True, "torch_version": torch.__version__,
                      "cuda_version": "12.8", "device_fallback": None}


# ---------------------------------------------------------------- cllora demo --device


def test_demo_takes_device_and_passes_it_to_every_run(monkeypatch, tmp_path):
    import cllora.commands.demo as demo
    import cllora.commands.run as run_cmd
    import cllora.engine.runtime as runtime
    import cllora.runner as runner

    seen = []
    monkeypatch.setattr(runtime, "build_runtime", lambda config, **k: runtime.Runtime(
        torch.device("cpu"), "fp32", None))
    monkeypatch.setattr(runner, "run", lambda config, out, **k: seen.append(config.device) or {})
    monkeypatch.setattr(run_cmd, "print_summary", lambda s: None)
    monkeypatch.setattr(demo, "save_comparison", lambda out, names: out / "demo.png")
    assert main(["demo", "--device", "cpu", "--quiet", "--out", str(tmp_path)]) == 0
    assert seen == ["cpu", "cpu"]


def test_demo_refuses_an_unknown_device(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--device", "tpu"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--device" in err and "'tpu'" in err and "Traceback" not in err


# ---------------------------------------------------------------- the loop reads the loss rarely


def _old_train_local(model, params, batches_per_epoch, epochs, lr, device):
    """The loop as it was before the loss stayed on the device (one host read a step): the reference."""
    from cllora.train import batch_loss

    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    model.train()
    for epoch in range(epochs):
        loss_sum, loss_tokens = 0.0, 0
        for batch in batches_per_epoch(epoch):
            loss, n = batch_loss(model, batch, device)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            value = float(loss.detach())
            loss_sum, loss_tokens = loss_sum + value * n, loss_tokens + n
    model.eval()
    return loss_sum / loss_tokens


def _lora_setup(tiny_model):
    from cllora.model import attach_lora, load_model, load_tokenizer
    from cllora.train import length_grouped_batches

    tokenizer = load_tokenizer(tiny_model)
    texts = [f"text number {i} " * (1 + i % 9) for i in range(40)]
    ids = [np.asarray(tokenizer(t)["input_ids"]) for t in texts]
    torch.manual_seed(0)
    model = attach_lora(load_model(tiny_model, "cpu", "fp32"), 4, 8.0, 0.0, ("q_proj", "v_proj"))
    params = [p for n, p in model.named_parameters() if "lora_" in n]

    def batches(epoch):
        return length_grouped_batches(ids, np.arange(len(ids)), 8, 32, tokenizer.pad_token_id,
                                      np.random.default_rng(epoch))
    return model, params, batches


def _adapter(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}


@pytest.mark.parametrize("read_every_step", [None, False])  # None: the CPU's choice; False: the GPU's
def test_the_device_side_loss_leaves_cpu_results_bit_identical(tiny_model, read_every_step):
    from cllora.train import train_local

    model, params, batches = _lora_setup(tiny_model)
    start = _adapter(model)
    reference = _old_train_local(model, params, batches, 2, 1e-2, torch.device("cpu"))
    expected = _adapter(model)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in start:
                p.copy_(start[n])
    seen = []
    result = train_local(model, params, batches, 2, "adamw", 1e-2, torch.device("cpu"), on_step=seen.append,
                         read_every_step=read_every_step)
    assert result.train_loss == reference  # exactly: float64 on the device is Python's float arithmetic
    assert all(torch.equal(expected[n], p) for n, p in _adapter(model).items())
    assert result.steps == 10 and len(seen) == 10
    assert all(v is None for v in seen) if read_every_step is False else all(isinstance(v, float) for v in seen)


def test_a_diverged_loss_is_noticed_at_the_epoch_end_without_per_step_reads(tiny_model):
    from cllora.train import train_local

    model, params, batches = _lora_setup(tiny_model)
    result = train_local(model, params, batches, 3, "sgd", 1e30, torch.device("cpu"), read_every_step=False)
    assert math.isnan(result.train_loss) and result.steps in (5, 10)  # stopped at an epoch's end
    model, params, batches = _lora_setup(tiny_model)
    result = train_local(model, params, batches, 3, "sgd", 1e30, torch.device("cpu"))
    assert math.isnan(result.train_loss) and result.steps < 10  # the CPU stops at the step itself


def test_evaluation_copies_to_the_host_once(tiny_model, monkeypatch):
    from cllora.train import evaluate

    model, _, batches = _lora_setup(tiny_model)
    eval_batches = batches(0)
    expected = evaluate(model, eval_batches, torch.device("cpu"))
    copies = []
    real_cpu = torch.Tensor.cpu
    monkeypatch.setattr(torch.Tensor, "cpu", lambda self, *a, **k: copies.append(1) or real_cpu(self, *a, **k))
    got = evaluate(model, eval_batches, torch.device("cpu"))
    assert len(eval_batches) == 5 and len(copies) == 2  # sums and tokens, once each, not per batch
    assert all(np.array_equal(a, b) for a, b in zip(expected, got))
