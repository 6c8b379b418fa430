"""What the CLI says (issue 32, item 6): errors name a setting as the user gave it (`--dp-clip` for a
flag, `dp_clip (in exp.toml)` for a config key: one rule, cllora.commands.flags.spoken); `run` ends with
every file it wrote and the next step; Ctrl-C says how to resume; --quiet silences Flower's banner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cllora.cli import main
from cllora.engine.progress import RunProgress


def tiny(model: str, out: Path, *extra: str) -> list[str]:
    return ["run", "--model", model, "--max-train-examples", "80", "--max-test-examples", "8",
            "--clients", "4", "--clients-per-round", "2", "--rounds", "2", "--max-length", "32",
            "--rank", "2", "--precision", "fp32", "--device", "cpu", "--out", str(out), *extra]


@pytest.mark.parametrize("argv, toml, said", [
    (["--dp-clip", "-1", "--dp-noise", "1"], None, "--dp-clip must be a number > 0, got -1.0"),
    (["--dp-noise", "1"], None, "--dp-noise = 1.0 needs dp_clip"),
    (["--clients", "4", "--clients-per-round", "9"], None, "--clients-per-round must be <= clients (4)"),
    (["--strategy", "scaffold", "--dp-clip", "1", "--dp-noise", "1"], None,
     "--strategy 'scaffold' does not compose with client-level DP"),
    ([], "dp_clip = -1\ndp_noise = 1\n", "dp_clip (in {toml}) must be a number > 0, got -1.0"),
    ([], 'dp_clip = "a"\n', "dp_clip (in {toml}) must be a number or left out, got 'a'"),
    (["--dp-clip", "-2"], "dp_clip = 1\ndp_noise = 1\n", "--dp-clip must be a number > 0, got -2.0"),
])
def test_an_error_names_the_setting_as_the_user_gave_it(tmp_path, capsys, argv, toml, said):
    extra = []
    if toml is not None:
        (tmp_path / "exp.toml").write_text(toml)
        extra = ["--config", str(tmp_path / "exp.toml")]
    assert main(["run", "--quiet", "--out", str(tmp_path / "run"), *extra, *argv]) == 2
    err = capsys.readouterr().err
    assert said.format(toml=tmp_path / "exp.toml") in err, err
    assert "Traceback" not in err and not (tmp_path / "run").exists()


def test_run_ends_with_every_file_it_wrote_and_the_next_step(tiny_model, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(tiny(tiny_model, out, "--quiet")) == 0
    printed = capsys.readouterr().out
    written = printed[printed.index(f"wrote {out}/: "):].splitlines()[0]
    on_disk = {p.name + ("/" if p.is_dir() else "") for p in out.iterdir()}
    assert set(written.split(": ", 1)[1].split(", ")) == on_disk
    assert {"config.json", "rounds.csv", "checkpoint.safetensors", "adapter/", "test_losses.npz"} <= on_disk
    assert f"next: cllora report {out}" in printed


def test_ctrl_c_says_the_resume_command_and_that_command_finishes_the_run(tiny_model, tmp_path, capsys,
                                                                          monkeypatch):
    out = tmp_path / "run"
    real = RunProgress.round_done

    def interrupt_after_round_1(self, row):
        real(self, row)
        if row["round"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(RunProgress, "round_done", interrupt_after_round_1)
    assert main(tiny(tiny_model, out, "--quiet")) == 130
    err = capsys.readouterr().err
    assert f"stopped after round 1, saved in {str(out)!r}; continue it with:\n  cllora run --resume {out}" in err
    monkeypatch.setattr(RunProgress, "round_done", real)
    assert main(["run", "--resume", str(out), "--quiet"]) == 0
    assert "next: cllora report" in capsys.readouterr().out


@pytest.mark.flower
def test_quiet_silences_flowers_banner(tiny_model, tmp_path):
    pytest.importorskip("flwr")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    argv = tiny(tiny_model, tmp_path / "run", "--engine", "flower-sim", "--rounds", "1")
    done = subprocess.run([sys.executable, "-m", "cllora.cli", *argv, "--quiet"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "DEPRECATED" not in done.stderr + done.stdout and "Flower" not in done.stderr, done.stderr[-2000:]
