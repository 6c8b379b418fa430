"""The published results (results/, see FINDINGS.md) regenerate exactly: `cllora report results/`
computes the committed claims.json again from the committed run files, with no training."""

from __future__ import annotations

import json
import re
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


def _copy(names: list[str], dest: Path) -> Path:
    import shutil

    for name in names:
        shutil.copytree(RESULTS / name, dest / name)
    return dest


def _numbers(claims: list[dict]) -> dict:
    """Per claim: its headline numbers and the numbers of each comparison (labels left out: a
    setting's label names the keys that differ from the other settings in the folder)."""
    keys = ("verdict", "effect", "low", "high", "seeds", "p_value", "p_holm", "extension", "sweep_dirs", "decides")
    return {c["claim"]: ({k: c.get(k) for k in keys},
                         {json.dumps({k: d.get(k) for k in keys}, sort_keys=True) for d in c["comparisons"]})
            for c in claims}


@pytest.mark.skipif(not (RESULTS / "claims.json").is_file(), reason="no published results in this checkout")
def test_an_unrelated_sweep_in_the_folder_changes_no_claim_and_no_strategy_p_value(tmp_path):
    """Holm families are per claim (and, in the strategies table, per base setting): adding a sweep
    that none of a claim's deciding settings is in (study-privacy-200) to a copy of results/ leaves
    every claim's numbers unchanged, and adding FedEx-LoRA's sweep leaves the strategies table's
    other rows unchanged. (Before, the table's Holm family was every comparison in the folder:
    FedEx-LoRA's sweep changed FedAdam's Holm p.)"""
    from cllora.analysis import load_runs, tables
    from cllora.analysis.strategies import strategy_rows

    base = ["study-strategies", "study-null", "study-null-seeds34"]
    quiet = dict(log=lambda m: None)
    runs = load_runs(_copy(base, tmp_path / "a"), **quiet)
    before_claims, before_rows = _numbers(tables(runs)[4]), strategy_rows(runs)
    unrelated = load_runs(_copy(base + ["study-privacy-200"], tmp_path / "c"), **quiet)
    for claim, (head, comps) in _numbers(tables(unrelated)[4]).items():  # it decides nothing, changes nothing
        assert head == before_claims[claim][0] and before_claims[claim][1] <= comps, claim
    # FedEx-LoRA's sweep holds strategy comparisons of its own base setting: the table's others stay
    more = load_runs(_copy(base + ["study-aggregation"], tmp_path / "b"), **quiet)
    after_rows = {(r["setting"], r["scheme"], r["strategy"]): r["vs_baseline"] for r in strategy_rows(more)}
    for row in before_rows:
        assert after_rows[(row["setting"], row["scheme"], row["strategy"])] == row["vs_baseline"]


TRIPLE = r"([−+-]?\d+\.\d+)( %)? \[([−+-]?\d+\.\d+)(?: %)?, ([−+-]?\d+\.\d+)(?: %)?\]"
OTHER_SOURCES = ("## Differential privacy",)  # privacy statistics: the report's DP section, not claims.json
# intervals FINDINGS.md quotes from elsewhere, each with where it comes from (its text says so too)
HISTORICAL = {
    "−0.027 [−0.042, −0.011]": "the biased best-of-three contrast the quantity claim used before (withdrawn)",
    "+0.0024 [−0.0145, +0.0194]": "natural clients minus IID: the report's natural-client section, no claim",
    "+0.1 [−2.2, +2.4]": "the little-local-effect claim's relative contrast before issue 30 part B (withdrawn: "
                         "it counted the round-0 split difference; 3 planned seeds)",
    "−1.0 [−3.6, +1.7]": "the same at 5 seeds, as first published (withdrawn)",
}


def _triples(text: str) -> list[tuple[str, str, str, bool]]:
    import re

    return [(m.group(1), m.group(3), m.group(4), bool(m.group(2))) for m in re.finditer(TRIPLE, text)]


def _value(s: str) -> float:
    return float(s.replace("−", "-"))


@pytest.mark.skipif(not (RESULTS / "claims.json").is_file(), reason="no published results in this checkout")
def test_every_interval_findings_md_quotes_comes_from_the_published_runs():
    """Every 'effect [low, high]' FINDINGS.md's prose quotes (outside the sections named in
    OTHER_SOURCES) is, at the digits it shows, an interval of claims.json (a comparison, its
    extension, an evidence line), of the strategies table or of scripts/findings_why.py."""
    from cllora.analysis import load_runs
    from cllora.analysis.strategies import strategy_rows

    published = records.read_json(RESULTS / "claims.json")
    known: list[tuple[float, float, float, bool]] = []
    ests = [e for c in published["claims"] for e in [c, *c["comparisons"]]]
    ests += [e["extension"] for e in ests if e.get("extension")]
    ests += [pair for e in ests for pair in (e.get("pairs") or []) if isinstance(pair, dict)]
    ests += [r["vs_baseline"] for r in strategy_rows(load_runs(RESULTS, lambda m: None)) if r["vs_baseline"]]
    ests += [r["vs_baseline"]["extension"] for r in strategy_rows(load_runs(RESULTS, lambda m: None))
             if r["vs_baseline"] and r["vs_baseline"].get("extension")]
    for e in ests:
        if all(isinstance(e.get(k), float) for k in ("effect", "low", "high")):
            known += [(e["effect"], e["low"], e["high"], False), (100 * e["effect"], 100 * e["low"], 100 * e["high"], True)]
    text_sources = [line for c in published["claims"] for line in c["evidence"]]
    text_sources.append(_script("findings_why.py", str(RESULTS)))
    known += [(_value(a), _value(b), _value(c), pct) for t in text_sources for a, b, c, pct in _triples(t)]
    findings = (ROOT / "FINDINGS.md").read_text()
    for head in OTHER_SOURCES:
        start = findings.index(head)
        end = findings.find("\n## ", start + 1)
        findings = findings[:start] + findings[end if end > 0 else len(findings):]
    # the generated blocks are checked against what scripts/regenerate_findings.py writes instead,
    # so prose may quote them
    blocks = re.compile(r"<!-- (\w+) \(scripts/regenerate_findings.py\) -->.*?<!-- end \1 [^>]*-->", re.S)
    known += [(_value(a), _value(b), _value(c), pct) for m in blocks.finditer(findings)
              for a, b, c, pct in _triples(m.group(0))]
    findings = re.sub(r"<!-- (\w+) \(scripts/regenerate_findings.py\) -->.*?<!-- end \1 [^>]*-->", "", findings,
                      flags=re.S)
    quoted = _triples(findings)
    assert len(quoted) > 20
    missing = []
    for a, b, c, pct in quoted:
        digits = len(a.split(".")[1])
        tol = 0.5 * 10 ** -digits + 0.5e-4 + 1e-9  # text sources carry 4 decimals
        if f"{a} [{b}, {c}]" not in HISTORICAL and not any(
                pct == p and all(abs(_value(x) - y) <= tol for x, y in zip((a, b, c), k)) for *k, p in known):
            missing.append(f"{a} [{b}, {c}]")
    assert not missing, f"FINDINGS.md quotes intervals no published number gives: {missing}"


@pytest.mark.skipif(not (RESULTS / "claims.json").is_file(), reason="no published results in this checkout")
def test_findings_md_shows_the_regenerated_study_budget_tables():
    """The study-budget blocks of FINDINGS.md (each claim at both scales; overfitting and
    fluctuation per sweep and condition) are what scripts/regenerate_findings.py writes now."""
    import importlib.util

    from cllora.analysis import load_runs, tables

    spec = importlib.util.spec_from_file_location("regenerate_findings", ROOT / "scripts" / "regenerate_findings.py")
    regen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(regen)
    rows = tables(load_runs(RESULTS, log=lambda m: None))[0]
    text = (ROOT / "FINDINGS.md").read_text()
    published = records.read_json(RESULTS / "claims.json")["claims"]
    budgets = regen.budget_table(published, regen.plan_mdes(RESULTS))
    for name, body in (("budgets", budgets), ("shapes", regen.shape_table(rows))):
        assert f"{regen.MARK.format(name)}\n{body}\n{regen.MARK.format('end ' + name)}" in text, name
    assert "| study-null | smollm2-135m | IID | 3 |" in text  # replicate 0 only, planned seeds only
