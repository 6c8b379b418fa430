"""scripts/publish_results.py: a sweep's finished runs reach results/ with every file the report
reads (split_losses.npz included), an unfinished run and the heavy files stay behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_finished_runs_are_copied_with_the_files_the_report_reads(tmp_path):
    sweep = tmp_path / "study-x"
    for name, finished in (("done", True), ("running", False)):
        run = sweep / "m" / name
        run.mkdir(parents=True)
        for f in ("config.json", "rounds.csv", "clients.csv", "split_losses.npz", "test_losses.npz",
                  "checkpoint.safetensors", "global_loss.png", "run.log"):
            (run / f).write_text("x")
        if finished:
            (run / "summary.json").write_text("{}")
    (sweep / "index.json").write_text("{}")
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "publish_results.py"), str(sweep),
                           "--to", str(tmp_path / "results")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "results" / "study-x"
    assert sorted(p.name for p in (out / "m" / "done").iterdir()) == [
        "clients.csv", "config.json", "rounds.csv", "run.log", "split_losses.npz", "summary.json", "test_losses.npz"]
    assert not (out / "m" / "running").exists() and (out / "index.json").is_file()
    assert "skipped" in done.stderr
