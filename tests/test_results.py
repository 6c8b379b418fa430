"""The published results (results/, see FINDINGS.md) regenerate exactly: `cllora report results/`
computes the committed claims.json again from the committed run files, with no training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cllora import records
from cllora.files import _json_default
from cllora.report import compute_claims

RESULTS = Path(__file__).resolve().parents[1] / "results"


@pytest.mark.skipif(not (RESULTS / "claims.json").is_file(), reason="no published results in this checkout")
def test_the_report_reproduces_the_published_claims():
    computed = json.loads(json.dumps(compute_claims(RESULTS, log=lambda m: None), default=_json_default))
    published = records.read_json(RESULTS / "claims.json")
    assert computed == published
    verdicts = {c["claim"]: c for c in published["claims"]}
    # the null experiment, published with the findings, must not have produced a false positive
    null = verdicts["null experiment: replicates that differ only in training randomness differ"]
    assert null["verdict"] in ("inconclusive", "not testable")
