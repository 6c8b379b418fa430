"""benchmarks/device_check.sh without an accelerator: a clear message and exit 77, nothing measured;
its inputs stay in the repository and small (the lent GPU machine takes 64 MiB)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_without_a_gpu_the_device_check_says_so_and_exits_77():
    env = {**os.environ, "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([str(ROOT / "benchmarks" / "device_check.sh")], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 77, done.stderr
    assert "device check: no accelerator (CUDA_VISIBLE_DEVICES='' hides every GPU" in done.stdout
    assert "nothing measured" in done.stdout


def test_the_device_check_model_is_the_embedded_models_architecture_without_weights():
    config = json.loads((ROOT / "benchmarks" / "configs" / "smollm2-135m.json").read_text())
    assert (config["model_type"], config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]) == \
        ("llama", 576, 30, 49152)
    assert not list((ROOT / "benchmarks").rglob("*.safetensors"))
