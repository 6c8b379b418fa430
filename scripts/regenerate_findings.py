"""Regenerate every number FINDINGS.md shows from the published runs, in place: results/claims.json,
the claims table (scripts/findings_table.py), the study-budget tables between their markers (each
of the study's Figs. 6-9 claims at the quick scale beside the study budget; whether the curves
overfit and fluctuated, per sweep and condition; the round-to-round change by clients sampled
again) and the study-budget figures in docs/
(scripts/study_budget_figures.py). tests/test_results.py checks that the committed files equal what
this writes.

    python scripts/regenerate_findings.py            # from the checkout's root
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from cllora import curves, records
from cllora.analysis import NOT_TESTABLE, claims_document, load_runs, tables
from cllora.analysis.plans import read_plan
from cllora.analysis.sampling import repeat_rows
from cllora.analysis.stats import fmt_effect, fmt_mde, t_interval
from cllora.files import _json_default
from cllora.report.budget_figures import write_study_figures

ROOT = Path(__file__).resolve().parents[1]
# the study's Figs. 6-9 claims, in FINDINGS' order
STUDY_CLAIMS = ("noniid_overfits_more", "alpha01_fluctuates_more", "length_skew_hurts", "iid_best_quantity",
                "alpha100_worst_quantity", "small_models_length_sensitive", "length_little_local_effect",
                "quantity_fairness_worse", "local_losses_converge")
# the sweeps of the curve-shape table: the quick scale's, then the study budget's
SHAPE_SWEEPS = ("study-null", "study-quantity", "study-local", "study-length-study", "study-quantity-study",
                "study-local-study", "study-size-study")
MARK = "<!-- {} (scripts/regenerate_findings.py) -->"


def _sweeps(claim: dict) -> str:
    """The sweep folders of the comparison a claim's effect is (its headline), e.g. ' (study-length-study)'."""
    same = [c for c in claim["comparisons"] if (c["effect"], c["low"], c["high"]) ==
            (claim["effect"], claim["low"], claim["high"])]
    return f" ({', '.join(same[0]['sweep_dirs'])})" if same and same[0].get("sweep_dirs") else ""


def _cell(claim: dict | None, untestable: str | None = None) -> str:
    """A budget's three columns of a claim; where that budget has no record of it, not testable
    for the reason `untestable`, else not run yet."""
    if claim is None:
        return f"— ({untestable}) | — | **{NOT_TESTABLE}**" if untestable else "not run yet | | "
    effect = (fmt_effect(claim, claim["unit"]) + _sweeps(claim) if claim["effect"] is not None
              else f"— ({claim['missing']})")
    return f"{effect} | {claim['seeds'] or '—'} | **{claim['verdict']}**"


def plan_mdes(results: Path) -> dict[str, str]:
    """Each claim's planning MDE as its headline sweep's plan (written before any run) states it."""
    out = {}
    for path in sorted(results.glob("*/plan.toml")):
        plan = read_plan(path)
        for cid, claim in plan.claims.items():
            if not plan.reconstructed and claim.mde is not None and claim.headline == plan.sweep:
                out[cid] = f"±{100 * claim.mde:.1f} %" if claim.unit == "%" else f"±{claim.mde:.4f}"
    return out


def budget_table(claims: list[dict], mdes: dict[str, str]) -> str:
    """Each study claim: its quick-scale verdict beside its study-budget one, with the planning MDE
    (the study-budget record's, else its plan's)."""
    by = {(c["id"], c.get("budget")): c for c in claims}
    lines = ["| claim | study's figure | quick: effect [95 % interval] | seeds | verdict | "
             "study budget: effect [95 % interval] | seeds | verdict | planning MDE |",
             "|---|---|---|---:|---|---|---:|---|---:|"]
    for cid in STUDY_CLAIMS:
        quick, study = by.get((cid, "quick")), by.get((cid, "study"))
        first = quick or study
        if first is None:
            continue
        mde = fmt_mde(study, study["unit"]) if study and study.get("mde") is not None else mdes.get(cid, "")
        # a quick record is left out only where no quick-scale run has the conditions it needs
        lines.append(f"| {first['claim']} | {first['source']} | "
                     f"{_cell(quick, 'no quick-scale run has the conditions it needs')} | "
                     f"{_cell(study)} | {mde} |")
    return "\n".join(lines)


def _mean_ci(values: list[float]) -> str:
    m, low, high = t_interval(values)
    if m is None:
        return "—"
    return f"{m:.3f}" + (f" [{low:.3f}, {high:.3f}]" if low is not None else "")


def shape_table(rows: list[dict]) -> str:
    """Per sweep and condition (complete runs of planned seeds; replicate 0 of the null experiment):
    seeds, the rounds, how many seeds reach their minimum before the last round, overfitting,
    the overfitting a flat curve of the same fluctuation shows from noise alone
    (curves.overfit_from_noise), the late trend and fluctuation (mean [95 % interval])."""
    lines = ["| sweep | model | condition | seeds | rounds | minimum before the last round | "
             "overfitting (nats) | a flat curve's, from noise | late trend (nats/round) | fluctuation (nats) |",
             "|---|---|---|---:|---:|---:|---|---:|---|---|"]
    for sweep in SHAPE_SWEEPS:
        mine = [r for r in rows if r.get("sweep_dir") == sweep and r["complete"] and r["planned"]
                and not json.loads(r["setting"]).get("replicate")]  # the null experiment's replicate 0
        groups: dict[tuple, list[dict]] = {}
        for r in mine:
            groups.setdefault((r["model"], r["scheme"] != "iid", r["scheme"], r["alpha"] or 0.0), []).append(r)
        for (model, _, scheme, alpha), runs in sorted(groups.items()):
            cond = "IID" if scheme == "iid" else f"{scheme} α = {alpha:g}"
            early = sum(1 for r in runs if r["best_round"] is not None and r["best_round"] < r["rounds_completed"])
            fluct = [r["fluctuation"] for r in runs]
            noise = curves.overfit_from_noise(sum(fluct) / len(fluct), runs[0]["rounds_completed"])
            lines.append(f"| {sweep} | {model} | {cond} | {len(runs)} | {runs[0]['rounds_completed']} | "
                         f"{early} of {len(runs)} | {_mean_ci([r['overfit'] for r in runs])} | "
                         f"{'—' if math.isnan(noise) else f'{noise:.3f}'} | "
                         f"{_mean_ci([r['late_trend'] for r in runs])} | {_mean_ci(fluct)} |")
    return "\n".join(lines)


def sampling_table(runs: list) -> str:
    """Per study-budget sweep (complete runs of planned seeds): the round-to-round change of the
    global test loss by how many of a round's clients the previous round also sampled."""
    mine = [r for r in runs if r.sweep and r.sweep.budget == "study" and r.complete and r.planned]
    lines = ["| sweep | clients also sampled the round before | (seed, round) events | changes (runs × rounds) | "
             "mean change (nats) | mean \\|change\\| (nats) |", "|---|---:|---:|---:|---:|---:|"]
    for row in repeat_rows(mine):
        lines.append(f"| {row['sweep']} | {row['repeated']} | {row['events']} | {row['changes']} | "
                     f"{row['mean_change']:+.3f} | {row['mean_abs_change']:.3f} |")
    return "\n".join(lines)


def replace_between(text: str, name: str, body: str) -> str:
    start, end = MARK.format(name), MARK.format(f"end {name}")
    if start not in text or end not in text:
        raise SystemExit(f"regenerate_findings: FINDINGS.md has no {start} ... {end} block")
    head, rest = text.split(start, 1)
    return f"{head}{start}\n{body}\n{end}{rest.split(end, 1)[1]}"


def replace_claims_table(text: str, table: str) -> str:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| claim | budget |"))
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    lines[start:end] = table.splitlines()
    return "\n".join(lines) + ("\n" if text.endswith("\n") else "")


def main() -> int:
    results = ROOT / "results"
    runs = load_runs(results, log=lambda m: None)
    rows, _, _, _, claims = tables(runs)
    doc = json.loads(json.dumps(claims_document(claims), default=_json_default))
    records.write_json(results / "claims.json", doc)
    table = subprocess.run([sys.executable, str(ROOT / "scripts" / "findings_table.py"), str(results / "claims.json")],
                           capture_output=True, text=True, check=True).stdout.strip()
    findings = ROOT / "FINDINGS.md"
    text = replace_claims_table(findings.read_text(), table)
    text = replace_between(text, "budgets", budget_table(doc["claims"], plan_mdes(results)))
    text = replace_between(text, "shapes", shape_table(rows))
    text = replace_between(text, "sampling", sampling_table(runs))
    findings.write_text(text)
    for path in write_study_figures(runs, ROOT / "docs"):
        print(path.relative_to(ROOT))
    print(f"claims.json: {len(doc['claims'])} claims; FINDINGS.md tables rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
