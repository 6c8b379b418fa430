"""The set-up (Makefile + scripts/install_torch.sh) with a fake Python and a fake nvidia-smi: a
changed TORCH_SPEC re-installs, and `auto` picks the CUDA or the CPU build of torch by the machine,
falling back to the package index where PyTorch's CPU index cannot be reached."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FAKE_PY = """#!/bin/sh
echo "$*" >> "{log}"
case "$*" in
  *"--index-url https://download.pytorch.org/whl/cpu"*) [ -n "$FAIL_CPU_INDEX" ] && exit 1 ;;
esac
case "$1" in -c) echo "torch reported" ;; esac
exit 0
"""

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def fake_machine(tmp_path: Path, gpu: str | None) -> tuple[Path, Path, dict]:
    """(project copy, log of the fake python's calls, environment) on a machine with or without a GPU."""
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    for name in ("Makefile", "pyproject.toml", "scripts/install_torch.sh"):
        shutil.copy(ROOT / name, project / name)
    log = tmp_path / "calls.log"
    python = project / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(FAKE_PY.format(log=log))
    python.chmod(0o755)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\necho '{gpu}'\n" if gpu else "#!/bin/sh\nexit 9\n")
    smi.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    env.pop("FAIL_CPU_INDEX", None)
    return project, log, env


def make_install(project: Path, env: dict, *args: str) -> str:
    done = subprocess.run(["make", "-s", "install", *args], cwd=project, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def torch_installs(log: Path) -> list[str]:
    lines = log.read_text().splitlines() if log.exists() else []
    return [line for line in lines if "torch==" in line]


def test_a_changed_torch_spec_reinstalls_and_an_unchanged_one_does_not(tmp_path):
    project, log, env = fake_machine(tmp_path, gpu=None)
    make_install(project, env, "TORCH_SPEC=torch==2.13.0")
    assert torch_installs(log) == ["-m pip install --quiet torch==2.13.0"]
    make_install(project, env, "TORCH_SPEC=torch==2.13.0")
    assert len(torch_installs(log)) == 1  # up to date: nothing installed again
    cuda = "torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
    make_install(project, env, f"TORCH_SPEC={cuda}")
    assert torch_installs(log)[-1] == f"-m pip install --quiet {cuda}"


def test_auto_installs_the_cuda_build_where_a_gpu_is(tmp_path):
    project, log, env = fake_machine(tmp_path, gpu="GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1)")
    out = make_install(project, env)
    assert torch_installs(log) == ["-m pip install --quiet torch==2.13.0"]
    assert "NVIDIA GPU found (GPU 0: NVIDIA H100 80GB HBM3" in out and "the CUDA build" in out


def test_auto_installs_the_cpu_build_without_a_gpu_and_falls_back_to_the_index(tmp_path):
    project, log, env = fake_machine(tmp_path, gpu=None)
    out = make_install(project, env)
    (call,) = torch_installs(log)
    assert "--index-url https://download.pytorch.org/whl/cpu torch==2.13.0" in call
    assert "no NVIDIA GPU" in out and "the CPU build" in out
    project, log, env = fake_machine(tmp_path / "offline", gpu=None)
    out = make_install(project, {**env, "FAIL_CPU_INDEX": "1"})
    assert torch_installs(log)[-1] == "-m pip install --quiet torch==2.13.0"
    assert "is not reachable" in out and "CUDA build, several GB" in out
