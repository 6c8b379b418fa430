"""The published results (results/, see FINDINGS.md) regenerate exactly: `cllora report results/`
computes the committed claims.json again from the committed run files, with no training."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cllora import records
from cllora.files import _json_default
from cllora.analysis import compute_claims

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"


@pytest.mark.skipif(not (RESULTS / "claims.json").is_file(), reason="no published results in this checkout")
def test_the_report_reproduces_the_published_claims():
    computed = json.loads(json.dumps(compute_claims(RESULTS, log=lambda m: None), default=_json_default))
    published = records.read_json(RESULTS / "claims.json")
    assert computed == published
    verdicts = {c["claim"]: c for c in published["claims"]}
    # the null experiment, published with the findings, must not have produced a false positive
    null = verdicts["null experiment: replicates that differ only in training randomness differ"]
    assert null["verdict"] in ("inconclusive", "not testable")


def _script(name: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / name), *args], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.skipif(not (RESULTS / "claims.json").is_file(), reason="no published results in this checkout")
def test_findings_md_shows_the_published_claims_table():
    """FINDINGS.md's claims table is exactly what scripts/findings_table.py writes from claims.json,
    so a regenerated claims.json with a stale table in FINDINGS.md fails here."""
    table = _script("findings_table.py", str(RESULTS / "claims.json")).strip()
    assert len(table.splitlines()) > 2
    assert table in (ROOT / "FINDINGS.md").read_text()


@pytest.mark.skipif(not (RESULTS / "claims.json").is_file(), reason="no published results in this checkout")
def test_the_mechanism_numbers_come_from_every_published_setting():
    """scripts/findings_why.py prints a line for each skewed condition of every published sweep
    (a metric a sweep did not record, NaN in its rounds.csv, is skipped, not a crash)."""
    lines = _script("findings_why.py", str(RESULTS)).splitlines()
    conditions = {line.split(" | ")[1].split(" vs IID")[0] for line in lines}
    assert {"length α=0.1", "quantity α=0.1", "natural α=3.03"} <= conditions
    assert all(line.count(" | ") == 4 for line in lines)
