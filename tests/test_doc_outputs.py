"""The outputs README.md and docs/ show are the program's (issue 32, item 6): every block marked
`<!-- output: ID -->` equals what the command prints now (scripts/doc_outputs.py regenerates them);
the training runs the docs show (minutes of the real model, not rerun here) print their round lines
in the format a run prints today, and name only columns rounds.csv and clients.csv have."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from cllora import records
from cllora.cli import main

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("doc_outputs", ROOT / "scripts" / "doc_outputs.py")
doc_outputs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(doc_outputs)


def test_every_output_block_is_marked_and_known():
    ids = doc_outputs.marked()
    assert set(ids) == set(doc_outputs.OUTPUTS)  # each generated output is shown somewhere
    assert ids.count("help") == 2 and ids.count("params") == 2


def test_the_help_and_params_blocks_are_what_the_program_prints():
    pages = [doc_outputs.ROOT / "README.md", doc_outputs.ROOT / "docs" / "guide.md"]
    cache: dict[str, str] = {}
    for page in pages:
        for match in doc_outputs.MARKER.finditer(page.read_text()):
            if match["id"] in ("help", "params"):
                assert doc_outputs.block(match["id"], cache) == match["body"], (page, match["id"])


@pytest.mark.slow
def test_every_shown_output_is_the_programs():
    """The partition blocks too (the real tokenizer over 2,000 texts); the script rewrites them."""
    assert doc_outputs.stale() == []


def test_the_checker_notices_a_stale_block(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n<!-- output: help -->\n```\n$ cllora --help\nold text\n```\nmore\n")
    assert doc_outputs.stale([page]) and "old text" in page.read_text()
    doc_outputs.stale([page], write=True)
    assert doc_outputs.stale([page]) == [] and "usage: cllora" in page.read_text()


def _shape(line: str) -> str:
    return " ".join(re.sub(r"-?\d+(\.\d+)?", "N", line).split())


def _shown_run_lines() -> list[str]:
    """The round lines of the `cllora run` examples in README.md and docs/guide.md."""
    lines = []
    for page in (ROOT / "README.md", ROOT / "docs" / "guide.md"):
        for fence in re.findall(r"```\n(\$ cllora run .*?)```", page.read_text(), re.S):
            lines += [line for line in fence.splitlines() if line.startswith("round ")]
    return lines


def _shown_csv_headers() -> list[tuple[str, list[str]]]:
    """(file, columns) of every CSV excerpt the docs show (a `# .../rounds.csv` comment, then a header)."""
    out = []
    for page in (ROOT / "README.md", ROOT / "docs" / "guide.md"):
        for name, header in re.findall(r"^# \S+/(rounds|clients)\.csv.*\n(\w+(?:,\w+)+)$", page.read_text(), re.M):
            out.append((name, header.split(",")))
    return out


def test_shown_run_lines_have_the_format_a_run_prints_and_name_real_columns(tiny_model, tmp_path, capsys):
    shown = _shown_run_lines()
    assert len(shown) >= 6
    argv = ["run", "--model", tiny_model, "--max-train-examples", "80", "--max-test-examples", "8",
            "--clients", "4", "--clients-per-round", "2", "--rounds", "1", "--max-length", "32", "--rank", "2",
            "--precision", "fp32", "--device", "cpu", "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    printed = capsys.readouterr()
    shapes = {_shape(line) for line in (printed.out + printed.err).splitlines() if line.startswith("round ")}
    assert len(shapes) == 2  # round 0, and a trained round
    assert {_shape(line) for line in shown} <= shapes
    headers = _shown_csv_headers()
    assert {name for name, _ in headers} == {"rounds", "clients"}
    for name, columns in headers:
        known = records.round_columns(5) if name == "rounds" else records.CLIENT_COLUMNS
        assert set(columns) <= set(known), (name, set(columns) - set(known))
