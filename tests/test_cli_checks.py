"""The command line on bad or inapplicable input: exit 2 with one sentence, nothing written; and the
runs that used to crash after finishing (issue 19 §3), on the tests' tiny OPT."""

from __future__ import annotations

import json

import pytest

from cllora import records
from cllora.cli import main


def tiny_args(model: str, out, *extra: str) -> list[str]:
    return ["run", "--model", model, "--max-train-examples", "120", "--max-test-examples", "12",
            "--clients", "4", "--clients-per-round", "2", "--rounds", "1", "--max-length", "64",
            "--rank", "2", "--precision", "fp32", "--device", "cpu", "--quiet", "--out", str(out), *extra]


def refused(capsys, argv: list[str], message: str) -> str:
    """Run the CLI, expect exit 2 and `message` in its one-line error, no traceback."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert "Traceback" not in err
    return err


def test_fairness_every_0_finishes_with_a_summary(tiny_model, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(tiny_args(tiny_model, out, "--fairness-every", "0")) == 0
    printed = capsys.readouterr().out
    assert "not measured (--fairness-every 0)" in printed
    assert records.read_csv(out / "rounds.csv")[-1]["fairness_var"] is None


def test_resuming_a_finished_run_says_so_and_changes_nothing(tiny_model, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(tiny_args(tiny_model, out)) == 0
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert main(["run", "--resume", str(out), "--quiet"]) == 0
    assert "already complete (1 rounds); nothing to do" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert "resumes" not in json.loads((out / "config.json").read_text())
    # a resume that changes a result-defining setting is still refused first
    refused(capsys, ["run", "--resume", str(out), "--lr", "0.1", "--quiet"], "the run was made with lr=")


def test_max_length_above_the_context_is_refused_before_anything_is_written(tiny_model, tmp_path, capsys):
    out = tmp_path / "run"
    refused(capsys, tiny_args(tiny_model, out, "--max-length", "600"),
            "max_length (600) is above the model's context of 512 tokens; use at most 512")
    assert not out.exists()
