"""The numbers of the study-budget figures (pure; drawn by cllora.report.budget_figures): each of
the study's Figs. 6–9, and the model-size comparison, with the quick-scale sweep beside the
study-budget one. Every condition is a curve of the mean over seeds with the 95 % t-interval of
that mean, over the complete runs of the seeds its sweep planned (an extension's seeds are left
out), of a per-seed quantity from which the test-text sampling noise between seeds is removed:

- global figures (Figs. 6, 7, model size): the change of the global test loss since round 0, each
  seed measured on its own test texts, and the skewed condition minus IID paired by seed. Each
  seed draws its own test sample, whose loss level differs from seed to seed (the untrained
  model's loss has sd 0.05–0.07 nats over the published seeds, 3.72–3.86): a band around the raw
  loss would be mostly that sampling noise, not training's.
- local figures (Figs. 8, 9): the local models' change since round 0 (each client's local model
  on its own split minus the untrained model on the same split, mean over clients; the quantity
  of "length skew has little effect on local training"), and the spread of the local models'
  losses across clients with their splits' sampling variance subtracted (rounds.csv's
  local_models_var_corrected; "the clients' local losses converge").
"""

from __future__ import annotations

from dataclasses import dataclass

from cllora.analysis.local import local_change_curve
from cllora.curves import since_start
from cllora.analysis.runs import RunRecord
from cllora.analysis.stats import curve, finite, mean_std_curve


@dataclass(frozen=True)
class Panel:
    """One column: the runs of a sweep folder (and, where a folder holds several settings, the
    config values that pick one)."""

    title: str
    folder: str
    where: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True)
class StudyFigure:
    key: str  # docs/study-budget-<key>.png
    title: str
    kind: str  # "global" or "local"
    scheme: str  # the skew drawn against IID
    panels: tuple[Panel, ...]


SMOLLM = (("model", "smollm2-135m"),)
FIGURES = (
    StudyFigure("fig6", "Length skew, global model (the study's Fig. 6)", "global", "length", (
        Panel("quick scale: 6 rounds × 2 epochs", "study-null", (("replicate", 0),)),
        Panel("study budget: 10 rounds × 5 epochs", "study-length-study"))),
    StudyFigure("fig7", "Quantity skew, global model (the study's Fig. 7)", "global", "quantity", (
        Panel("quick scale: 6 rounds × 1 epoch", "study-quantity"),
        Panel("study budget: 10 rounds × 5 epochs", "study-quantity-study"))),
    StudyFigure("fig8", "Length skew, local training (the study's Fig. 8)", "local", "length", (
        Panel("quick scale: 5 rounds × 1 epoch", "study-local"),
        Panel("study budget: 10 rounds × 3 epochs", "study-local-study"))),
    StudyFigure("fig9", "Quantity skew, local training (the study's Fig. 9)", "local", "quantity", (
        Panel("quick scale: 5 rounds × 1 epoch", "study-local"),
        Panel("study budget: 10 rounds × 3 epochs", "study-local-study"))),
    StudyFigure("size", "Model size at the study budget, length skew (the study's Fig. 6 analysis)", "global",
                "length", (
        Panel("smollm2-135m (135 M), 10 rounds × 5 epochs", "study-length-study", SMOLLM),
        Panel("gemma3-270m (270 M), 10 rounds × 3 epochs", "study-size-study", (("model", "gemma3-270m"),)))),
)

CHANGE_LABEL = "global test loss − round 0 (nats/token)"
# each kind's two rows: (key of the per-run curve, y label, paired against IID)
ROWS = {
    "global": (("change", CHANGE_LABEL, False),
               ("change", "minus IID, paired by seed (nats/token)", True)),
    "local": (("local_change", "local models − round 0, own split (nats/token)", False),
              ("local_spread", "local spread, noise-corrected (nats²)", False)),
}


def run_curves(run: RunRecord) -> dict[str, list[tuple[int, float]]]:
    """A run's per-round curves: `change` (global test loss minus round 0's), `local_change`
    (cllora.analysis.local.local_change_curve) and `local_spread` (local_models_var_corrected)."""
    return {"change": since_start(curve(run.rounds, "global_test_loss")),
            "local_change": local_change_curve(run.clients),
            "local_spread": curve(run.rounds, "local_models_var_corrected")}


def _chosen(runs: list[RunRecord], panel: Panel, scheme: str) -> dict[tuple, dict[int, RunRecord]]:
    """The panel's complete, planned runs of `scheme` and IID: {(scheme, alpha): {seed: run}}."""
    out: dict[tuple, dict[int, RunRecord]] = {}
    for run in runs:
        cfg = run.config
        if (run.sweep is None or run.sweep.folder != panel.folder or not run.complete or not run.planned
                or cfg.get("scheme") not in (scheme, "iid")
                or any(cfg.get(k) != v for k, v in panel.where)):
            continue
        alpha = None if cfg["scheme"] == "iid" else float(cfg["alpha"])
        out.setdefault((cfg["scheme"], alpha), {})[int(cfg.get("seed", 0))] = run
    return out


def _label(scheme: str, alpha: float | None, seeds: int) -> str:
    return ("IID" if scheme == "iid" else f"α = {alpha:g}") + f" (n={seeds})"


def panel_rows(runs: list[RunRecord], panel: Panel, fig: StudyFigure) -> list[list[dict]]:
    """The panel's rows of curves (ROWS[fig.kind]), each curve dict(label, scheme, alpha, x, mean,
    half, n): mean and 95 % half-width over seeds; a paired row holds each skewed condition minus
    IID over the seeds both ran. A local figure draws only the smallest α against IID (as the
    study's Figs. 8 and 9)."""
    conds = _chosen(runs, panel, fig.scheme)
    if fig.kind == "local":
        skewed = sorted(a for s, a in conds if s != "iid")
        conds = {k: v for k, v in conds.items() if k[0] == "iid" or (skewed and k[1] == skewed[0])}
    order = sorted(conds, key=lambda k: (k[0] == "iid", k[1] or 0.0))
    per_run = {k: {s: run_curves(r) for s, r in conds[k].items()} for k in order}
    iid = per_run.get(("iid", None), {})
    rows = []
    for key, _, paired in ROWS[fig.kind]:
        row = []
        for scheme, alpha in order:
            seeds = per_run[(scheme, alpha)]
            if paired:
                if scheme == "iid":
                    continue
                both = sorted(set(seeds) & set(iid))
                curves = [_minus(seeds[s][key], iid[s][key]) for s in both]
            else:
                curves = [seeds[s][key] for s in sorted(seeds)]
            curves = [c for c in curves if c]
            if curves:
                row.append({"label": _label(scheme, alpha, len(curves)), "scheme": scheme, "alpha": alpha,
                            **mean_std_curve(curves)})
        rows.append(row)
    return rows


def _minus(a: list[tuple[int, float]], b: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """a − b at the rounds both evaluated."""
    other = dict(b)
    return [(r, v - other[r]) for r, v in a if r in other and finite(v) and finite(other[r])]


def figure_data(runs: list[RunRecord], fig: StudyFigure) -> dict:
    """dict(key, title, kind, ylabels, panels=[dict(title, folder, rows, seeds, fewest, planned)]):
    what the figure draws; `seeds` and `fewest` are the most and the fewest seeds of any curve in
    the panel (0: nothing has run), `planned` how many seeds its sweep's plan fixes (None: no plan)."""
    panels = []
    for panel in fig.panels:
        rows = panel_rows(runs, panel, fig)
        counts = [max(c["n"], default=0) for row in rows for c in row]
        plan = next((r.sweep.plan for r in runs if r.sweep and r.sweep.folder == panel.folder and r.sweep.plan), None)
        panels.append({"title": panel.title, "folder": panel.folder, "rows": rows, "seeds": max(counts, default=0),
                       "fewest": min(counts, default=0), "planned": len(plan.seeds) if plan else None})
    return {"key": fig.key, "title": fig.title, "kind": fig.kind,
            "ylabels": [label for _, label, _ in ROWS[fig.kind]], "panels": panels}
