"""The numbers behind a report, with no drawing and no HTML: run directories read as rows
(runs.py, conditions.py), statistics and their calibration (stats.py, calibration.py), the study's
claims and cllora's own with effect, 95 % interval, seeds and a three-way verdict (claims.py,
own_claims.py, method_claims.py, verdicts.py), strategy comparisons (strategies.py), privacy
statistics (privacy.py), the noise-corrected fairness and its estimator (fairness.py), the local
models' change from round 0 (local.py) and `claims.json`'s content. `cllora.report` draws and writes from these;
nothing here imports matplotlib (tests/test_architecture.py guards the direction).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from cllora.analysis.claims import evaluate_claims
from cllora.analysis.conditions import condition_rows, run_row, setting_key, setting_labels
from cllora.analysis.costs import cost_table
from cllora.analysis.plans import BUDGETS
from cllora.analysis.fairness import condition_fields, fairness_fields
from cllora.analysis.local import local_change
from cllora.analysis.runs import RunRecord, find_run_dirs, load_run, load_runs
from cllora.analysis.stats import CONTRADICTED, INCONCLUSIVE, LEVEL, MIN_SEEDS, SUPPORTED
from cllora.analysis.verdicts import NOT_TESTABLE

__all__ = ["CONTRADICTED", "INCONCLUSIVE", "NOT_TESTABLE", "SUPPORTED", "RunRecord", "Tables", "claims_document",
           "compute_claims", "find_run_dirs", "load_run", "load_runs", "tables"]

Tables = tuple[list[dict], list[dict], dict, list[dict], list[dict]]


def tables(runs: list[RunRecord]) -> Tables:
    """(run rows, condition rows, setting labels, cost table, claims) of some runs. Claims are
    decided per budget (quick-scale and study-budget evidence never enter one verdict): one record
    per claim and budget that has runs, each with its `budget`, where the budget has evidence for
    the claim or a plan that declares it (a claim with neither anywhere: once, not testable)."""
    # the fairness recomputed from split_losses.npz (or labelled legacy) and the local models'
    # change from round 0 override and join the rounds.csv columns, per run and per condition
    rows = [{**run_row(r.name, r.config, r.rounds, r.complete, r.test_losses, r.clients, r.sweep),
             **fairness_fields(r.config, r.meta, r.rounds, r.clients, r.split_losses),
             "local_change": local_change(r.clients)} for r in runs]
    conds = _conditions(rows)
    labels = setting_labels({setting_key(r.config): r.config for r in runs})
    costs = cost_table(runs)
    sizes = {c["model"]: c["total_params"] for c in costs if c["total_params"]}
    plans = {r.sweep.folder: r.sweep.plan for r in runs if r.sweep and r.sweep.plan}
    budgets = sorted({r["budget"] for r in rows}, key=lambda b: (b is None, BUDGETS.index(b) if b in BUDGETS else 0))
    by_budget = {budget: evaluate_claims(_conditions([r for r in rows if r["budget"] == budget]), sizes, labels,
                                         plans) for budget in budgets}
    declared = {(r.sweep.budget, cid) for r in runs if r.sweep and r.sweep.plan for cid in r.sweep.plan.claims}
    kept = {(b, c["id"]) for b in budgets for c in by_budget[b] if c["comparisons"] or (b, c["id"]) in declared}
    # a budget's record is kept where it has evidence or a plan of that budget declares the claim; a
    # claim kept nowhere is shown once, at the first budget, not testable, with its reason
    claims = [{**claim, "budget": budget} for budget in budgets for claim in by_budget[budget]
              if (budget, claim["id"]) in kept
              or (budget == budgets[0] and not any(cid == claim["id"] for _, cid in kept))]
    return rows, conds, labels, costs, claims


def _conditions(rows: list[dict]) -> list[dict]:
    """condition_rows with each condition's fairness estimator, legacy biases and local change."""
    return [{**c, **condition_fields(c["runs"])} for c in condition_rows(rows)]


def claims_document(claims: list[dict]) -> dict:
    """claims.json's content."""
    return {"min_seeds": MIN_SEEDS, "level": LEVEL, "claims": claims}


def compute_claims(root: str | Path, log: Callable[[str], None] = print) -> dict:
    """claims.json's content for the runs at or under `root`, without drawing or writing anything."""
    return claims_document(tables(load_runs(Path(root), log))[4])
