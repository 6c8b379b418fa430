"""The study-budget figures, drawing only (numbers from cllora.analysis.budget_figures): one figure
per study figure, the quick scale beside the study budget, a row per quantity with one y axis
shared along it so that the two scales compare directly, 95 % bands over seeds."""

from __future__ import annotations

from pathlib import Path

from cllora.analysis.budget_figures import FIGURES, figure_data
from cllora.analysis.runs import RunRecord
from cllora.records import save_figure
from cllora.report.axes import plt, wrap_title
from cllora.report.figures import plot_condition_curves

def study_figure(data: dict):
    """A figure of figure_data(): a column per panel, a row per quantity; panels whose sweep has
    no complete planned run say so."""
    rows, cols = len(data["ylabels"]), len(data["panels"])
    fig, axes = plt.subplots(rows, cols, figsize=(4.9 * cols + 0.4, 3.3 * rows + 0.9), squeeze=False,
                             sharey="row")
    for j, panel in enumerate(data["panels"]):
        for i, ylabel in enumerate(data["ylabels"]):
            ax = axes[i][j]
            plot_condition_curves(panel["rows"][i], ax, ylabel if j == 0 else "")
            if not panel["rows"][i]:
                ax.text(0.5, 0.5, f"{panel['folder']}: " + ("no complete planned run yet" if not panel["seeds"]
                                                             else "no run to draw yet"),
                        ha="center", va="center", transform=ax.transAxes, fontsize=9, color="0.4")
            if i == 0 and data["kind"] == "global":
                ax.axhline(0.0, color="0.6", lw=0.8)
            if i == 1 and data["kind"] == "global":
                ax.axhline(0.0, color="#222222", lw=0.9, ls="--")  # IID's own line
            if i < rows - 1:
                ax.set_xlabel("")
        short = panel["planned"] and panel["seeds"] and panel["fewest"] < panel["planned"]
        done = f"{panel['fewest']}" + (f"–{panel['seeds']}" if panel["seeds"] > panel["fewest"] else "")
        title = panel["title"] + (f" (so far {done} of {panel['planned']} planned seeds)" if short else "")
        axes[0][j].set_title(wrap_title(title, 4.9), fontsize=10)
    handles: dict = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab.split(" (n=")[0], h)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=len(handles),
                   frameon=False, fontsize=9)
    fig.suptitle(wrap_title(data["title"], fig.get_figwidth()), fontsize=11)
    fig.tight_layout(rect=(0, 0.05 if handles else 0, 1, 1))
    return fig


def write_study_figures(runs: list[RunRecord], out: Path, prefix: str = "study-budget-") -> list[Path]:
    """Every figure of cllora.analysis.budget_figures.FIGURES as out/<prefix><key>.png; the paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for spec in FIGURES:
        fig = study_figure(figure_data(runs, spec))
        path = out / f"{prefix}{spec.key}.png"
        save_figure(fig, path, dpi=110)
        paths.append(path)
    return paths
