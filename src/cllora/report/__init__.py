"""The HTML report of a run or a sweep (`cllora report DIR`): `write_report` reads the run
directories (runs.py), computes per-run and per-condition statistics (stats.py) and the study's
claims with effect, 95 % interval, seeds and a three-way verdict (claims.py), draws the figures
(figures.py) and writes one self-contained report.html (html.py), claims.json (the verdicts as
data) and every figure as PNG and SVG under DIR/figures/. Runs are shaped into rows by
conditions.py. No torch or model code: parameter counts come from each run's config.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from cllora.records import atomic_write_text, write_json
from cllora.report.claims import evaluate_claims
from cllora.report.conditions import condition_rows, cost_table, run_row, setting_key, setting_labels
from cllora.report.runs import RunRecord, find_run_dirs, load_run, load_runs
from cllora.report.stats import CONTRADICTED, INCONCLUSIVE, MIN_SEEDS, SUPPORTED
from cllora.report.verdicts import NOT_TESTABLE

__all__ = ["CONTRADICTED", "INCONCLUSIVE", "NOT_TESTABLE", "SUPPORTED", "RunRecord", "compute_claims", "find_run_dirs",
           "load_run", "load_runs", "write_report"]


def _tables(runs: list[RunRecord]):
    """(run rows, condition rows, setting labels, cost table, claims) of some runs."""
    rows = [run_row(r.name, r.config, r.rounds, r.complete, r.test_losses) for r in runs]
    conds = condition_rows(rows)
    labels = setting_labels({setting_key(r.config): r.config for r in runs})
    costs = cost_table(runs)
    sizes = {c["model"]: c["total_params"] for c in costs if c["total_params"]}
    return rows, conds, labels, costs, evaluate_claims(conds, sizes, labels)


def claims_document(claims: list[dict]) -> dict:
    """claims.json's content."""
    return {"min_seeds": MIN_SEEDS, "level": 0.95, "claims": claims}


def compute_claims(root: str | Path, log: Callable[[str], None] = print) -> dict:
    """claims.json's content for the runs at or under `root`, without drawing or writing anything."""
    return claims_document(_tables(load_runs(Path(root), log))[4])


def write_report(root: str | Path, log: Callable[[str], None] = print) -> Path:
    """Write root/report.html, root/claims.json and root/figures/*.png|svg for the run(s) at or
    under `root`."""
    from cllora.report.draw import draw_figures  # lazy: matplotlib, scipy
    from cllora.report.html import render_html  # lazy: matplotlib, scipy

    root = Path(root)
    runs = load_runs(root, log)
    rows, conds, labels, costs, claims = _tables(runs)
    figures = draw_figures(root, runs, conds, labels, log)
    write_json(root / "claims.json", claims_document(claims))
    out = root / "report.html"
    atomic_write_text(out, render_html(root, runs, rows, conds, labels, costs, claims, figures))
    return out
