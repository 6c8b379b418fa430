"""A DP run interrupted and resumed records the same DP diagnostics (update norms, clip factors) as an
uninterrupted one, digit for digit, on a model with more than 10 layers: its checkpoint's tensors
come back in sorted order ("layers.10" before "layers.2"), not the order the run held them in, and a
sum of squares over the tensors in another order differs in the last digit."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch

from cllora import records
from cllora.cli import main
from cllora.privacy.clip import update_norm

DP_ARGS = ["--dp-clip", "0.05", "--dp-noise", "0.5", "--dp-seeded-noise-voids-guarantee"]


@pytest.fixture(scope="module")
def deep_tiny_model(tiny_model, tmp_path_factory) -> str:
    """The tiny OPT with 12 layers: sorted tensor names differ from the model's order."""
    from transformers import AutoConfig, OPTForCausalLM

    path = tmp_path_factory.mktemp("deep-opt")
    for file in Path(tiny_model).iterdir():
        if "token" in file.name or file.name.startswith("special") or file.name.endswith(".txt"):
            shutil.copy(file, path / file.name)
    config = AutoConfig.from_pretrained(tiny_model)
    config.num_hidden_layers = 12
    torch.manual_seed(0)
    OPTForCausalLM(config).save_pretrained(path)
    return str(path)


def _args(model: str, out: Path, rounds: int) -> list[str]:
    return ["run", "--model", model, "--max-train-examples", "80", "--max-test-examples", "8",
            "--clients", "4", "--clients-per-round", "2", "--rounds", str(rounds), "--max-length", "32",
            "--rank", "2", "--lr", "5e-3", "--precision", "fp32", "--device", "cpu", "--scheme", "length",
            "--alpha", "0.5", "--quiet", "--out", str(out), *DP_ARGS]


def _rows(out: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in records.TIMING_COLUMNS}
            for r in records.read_csv(out / "rounds.csv")]


def test_a_resumed_dp_run_records_the_same_dp_diagnostics_to_the_last_digit(deep_tiny_model, tmp_path, capsys):
    assert main(_args(deep_tiny_model, tmp_path / "whole", 2)) == 0
    assert main(_args(deep_tiny_model, tmp_path / "cut", 1)) == 0
    assert main(["run", "--resume", str(tmp_path / "cut"), "--rounds", "2", "--quiet"]) == 0
    whole, cut = _rows(tmp_path / "whole"), _rows(tmp_path / "cut")
    assert len(whole) == len(cut) == 3
    dp_keys = [k for k in whole[1] if k.startswith("dp_") and whole[1][k] is not None]
    assert "dp_update_norm_median" in dp_keys and "dp_clip_factor_mean" in dp_keys
    for a, b in zip(whole, cut):
        for key in a:  # exact, not approx (NaN: an empty length class's loss, NaN in both)
            same = a[key] == b[key] or (isinstance(a[key], float) and math.isnan(a[key]) and math.isnan(b[key]))
            assert same, (a["round"], key, a[key], b[key])


def test_an_update_norm_does_not_depend_on_the_order_of_its_tensors():
    gen = torch.Generator().manual_seed(0)
    names = [f"layers.{i}.q_proj.lora_{ab}" for i in range(12) for ab in "AB"]
    state = {n: torch.randn(16, 8, generator=gen) * 10 ** (i % 7 - 3) for i, n in enumerate(names)}
    norms = {update_norm({k: state[k] for k in order}) for order in (names, sorted(names), names[::-1])}
    assert len(norms) == 1
