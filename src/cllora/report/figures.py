"""The comparison figures the report assembles in cllora.report.draw, drawing only (statistics come
from cllora.analysis.stats): conditions with 95 % bands over seeds, per-client pairs, loss per length
class, strategies side by side, utility against ε beside DP's cost per length class. `plot_x(data,
ax=None) -> Axes`.
"""

from __future__ import annotations

import math

import numpy as np

from cllora.partition.registry import scheme_title, uses_alpha
from cllora.records import axis_label
from cllora.report.axes import plt, round_axes, wrap_title
from cllora.analysis.privacy import fmt_epsilon

# Fixed colours for the study's conditions, so every figure reads the same way.
ALPHA_COLORS = {0.1: "#d62728", 1.0: "#ff7f0e", 100.0: "#1f77b4"}
IID_STYLE = {"color": "#222222", "ls": "--", "marker": "s"}


def condition_style(scheme: str, alpha: float | None, index: int = 0) -> dict:
    """Line style of a condition: IID dashed black, α = 0.1 / 1 / 100 red / orange / blue."""
    if scheme == "iid":
        return dict(IID_STYLE)
    if scheme == "natural":
        return dict(color="0.35", linestyle="-.")
    color = ALPHA_COLORS.get(float(alpha)) if alpha is not None else None
    if color is None:
        color = plt.get_cmap("tab10")((index + 4) % 10)
    return {"color": color, "ls": "-", "marker": "o"}


def _band_line(ax, c: dict, label: str, color, ls: str = "-", marker: str = "o") -> None:
    """A mean curve dict(x, mean[, half]) and, where half > 0 (several seeds), its band."""
    x, m, half = list(c["x"]), list(c["mean"]), list(c.get("half") or [0.0] * len(c["x"]))
    if not x:
        return
    ax.plot(x, m, label=label, lw=1.6, ms=3.5, color=color, ls=ls, marker=marker)
    if any(h > 0 for h in half):
        ax.fill_between(x, [a - h for a, h in zip(m, half)], [a + h for a, h in zip(m, half)],
                        color=color, alpha=0.15, lw=0)


def plot_condition_curves(curves: list[dict], ax=None, ylabel: str = axis_label("global_test_loss"),
                          log_y: bool | str = False):
    """One curve per condition: dict(label, scheme, alpha, x, mean[, half, n]); a band of mean ±
    half (the 95 % t-interval over seeds) where half > 0. log_y="auto": logarithmic when the
    values span over 20×."""
    ax = ax or plt.figure(figsize=(6, 4)).gca()
    for i, c in enumerate(curves):
        style = condition_style(c["scheme"], c.get("alpha"), i)
        _band_line(ax, c, c["label"], style["color"], style["ls"], style["marker"])
    values = [v for c in curves for v in c["mean"] if v is not None and math.isfinite(v)]
    if log_y == "auto":
        log_y = bool(values) and min(values) > 0 and max(values) / min(values) > 20
    if log_y:
        ax.set_yscale("log")
    round_axes(ax, ylabel)
    return ax


def class_loss_figure(skewed: dict, iid: dict, diff: dict, names: list[str], skew_label: str, title: str):
    """Loss per length class per round: {class: curve dict(x, mean)} of a skewed condition and of
    IID, a panel each (shared y axis, one colour per class as in the partition plots), and a third
    with `diff`, {class: dict(x, mean[, half])} of their difference (above 0: the skew hurts the
    class), with its band."""
    classes = sorted(set(skewed) & set(iid))
    colors = plt.get_cmap("viridis")(np.linspace(0.05, 0.95, max(len(classes), 1)))
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.1))
    axes[1].sharey(axes[0])
    for ax, label, curves in ((axes[0], skew_label, skewed), (axes[1], "IID", iid)):
        for color, c in zip(colors, classes):
            _band_line(ax, {"x": curves[c]["x"], "mean": curves[c]["mean"]}, names[c], color)
        ax.set_title(label, fontsize=10)
        round_axes(ax, axis_label("test_loss_c{c}"))
    for color, c in zip(colors, classes):
        if c in diff:
            _band_line(axes[2], diff[c], names[c], color)
    axes[2].axhline(0.0, color="0.4", lw=0.8)
    axes[2].set_title(f"{skew_label} minus IID", fontsize=10)
    round_axes(axes[2], "loss difference (nats/token)")
    axes[2].legend(title="length class", fontsize=7, title_fontsize=8, loc="upper left",
                   bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.suptitle(wrap_title(title, fig.get_figwidth()), fontsize=10.5)
    fig.tight_layout()
    return fig


def comparison_figure(panels: list[dict], title: str, ylabel: str, log_y: bool | str = False):
    """Side-by-side panels (one per model/setting): dict(title, curves) each; one shared legend."""
    n = max(1, len(panels))
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols + 0.6, 3.6 * rows + 0.7), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        plot_condition_curves(panel["curves"], ax, ylabel, log_y)
        ax.set_title(wrap_title(panel["title"], 4.6), fontsize=10)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    handles: dict = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(len(handles), 6),
                   frameon=False, fontsize=9)
    fig.suptitle(wrap_title(title, fig.get_figwidth()), fontsize=11)
    fig.tight_layout(rect=(0, 0.07 if handles else 0, 1, 1))
    return fig


def client_pair_figure(panels: list[dict], title: str, ylabel: str = "test loss (nats/token)"):
    """Per-client curves side by side (e.g. α = 0.1 vs IID) on one shared y axis, so the panels
    compare directly; dict(title, clients={id: (rounds, values)}) each."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.9), squeeze=False, sharey=True)
    cmap = plt.get_cmap("tab10" if max((len(p["clients"]) for p in panels), default=0) <= 10 else "tab20")
    for ax, panel in zip(axes[0], panels):
        for j, (cid, (x, y)) in enumerate(panel["clients"].items()):
            ax.plot(x, y, marker="o", ms=3, lw=1.2, color=cmap(j % cmap.N), label=f"client {cid}")
        ax.set_title(wrap_title(panel["title"], 5.2), fontsize=10)
        round_axes(ax, ylabel if ax is axes[0][0] else "")  # the y axis is shared
    handles = {lab: h for ax in axes.flat for h, lab in zip(*ax.get_legend_handles_labels())}
    if 0 < len(handles) <= 20:  # one legend for the figure: a client has one colour in every panel
        fig.legend(list(handles.values()), list(handles), loc="center left", bbox_to_anchor=(1.0, 0.5),
                   fontsize=7, frameon=False, ncol=2 if len(handles) > 10 else 1)
    fig.suptitle(wrap_title(title, fig.get_figwidth()), fontsize=10.5)
    fig.tight_layout()
    return fig


def strategy_figure(conditions: list[dict], title: str):
    """One row per condition, one column per rounds.csv column the curves hold (labelled by the
    column table), one colour per strategy (the same in every panel): dict(condition,
    curves={strategy: {column: [(round, value)]}}) each."""
    rows = max(1, len(conditions))
    panels = [(key, axis_label(key)) for key in dict.fromkeys(
        key for c in conditions for curves in c["curves"].values() for key in curves)]
    fig, axes = plt.subplots(rows, max(1, len(panels)), figsize=(13.5, 3.1 * rows + 0.8), squeeze=False)
    names = list(dict.fromkeys(name for c in conditions for name in c["curves"]))
    colors = {name: plt.get_cmap("tab10" if len(names) <= 10 else "tab20")(i) for i, name in enumerate(names)}
    for row, cond in zip(axes, conditions):
        for ax, (key, ylabel) in zip(row, panels):
            for name, curves in cond["curves"].items():
                points = curves.get(key) or []
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", ms=3, lw=1.3,
                        color=colors[name], label=name)
            round_axes(ax, ylabel)
            where = f"{scheme_title(cond['scheme'])}, {cond['condition']}" \
                if uses_alpha(cond["scheme"]) else cond["condition"]  # "IID", "natural clients"
            ax.set_title(wrap_title(f"{where}: {ylabel.split(' (')[0].split(' ‖')[0]}", 3.4), fontsize=10)
    handles = {lab: h for ax in axes.flat for h, lab in zip(*ax.get_legend_handles_labels())}
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(len(handles), 6),
                   frameon=False, fontsize=9)
    fig.suptitle(wrap_title(title, fig.get_figwidth()), fontsize=11)
    fig.tight_layout(rect=(0, 0.9 / (3.1 * rows + 0.8) if handles else 0, 1, 1))
    return fig


EPSILON_DASHES = ("-", "--", ":", "-.")


def _epsilon_positions(lines: list[dict]) -> tuple[dict[float, float], bool]:
    """Where each ε sits on the x axis: finite ε at itself (log axis), ∞ four times right of the
    largest finite one (at 1 when none is finite); and whether the axis is logarithmic."""
    eps = {p["epsilon"] for line in lines for p in line["points"]}
    finite_eps = sorted(e for e in eps if math.isfinite(e) and e > 0)
    inf_x = 4 * finite_eps[-1] if finite_eps else 1.0
    return {e: (inf_x if math.isinf(e) else e) for e in eps}, bool(finite_eps)


def plot_utility_epsilon(lines: list[dict], ax=None):
    """Final global test loss against the final ε: one line per condition, dict(scheme, alpha, label,
    points=[dict(epsilon, mean, low, high)], no_dp=dict(mean) | None), a band where the 95 %
    interval exists; ∞ (clipping only, no noise) right of the largest finite ε; the condition's
    runs without DP as a dotted level of its colour."""
    ax = ax or plt.figure(figsize=(6, 4)).gca()
    where, log_x = _epsilon_positions(lines)
    for i, line in enumerate(lines):
        style = condition_style(line["scheme"], line.get("alpha"), i)
        pts = line["points"]
        xs = [where[p["epsilon"]] for p in pts]
        ax.plot(xs, [p["mean"] for p in pts], color=style["color"], ls="-", marker=style["marker"],
                lw=1.6, ms=4, label=line["label"])
        if pts and all(p["low"] is not None for p in pts):
            ax.fill_between(xs, [p["low"] for p in pts], [p["high"] for p in pts], color=style["color"],
                            alpha=0.15, lw=0)
        if line.get("no_dp") and line["no_dp"]["mean"] is not None:
            ax.axhline(line["no_dp"]["mean"], color=style["color"], ls=":", lw=1.2, label=f"{line['label']}, no DP")
    if log_x:
        ax.set_xscale("log")
    ticks = sorted(where.items(), key=lambda kv: kv[1])
    ax.set_xticks([x for _, x in ticks], [fmt_epsilon(e) for e, _ in ticks])
    ax.minorticks_off()
    ax.set_xlabel("ε after the last round (δ as in the runs)")
    ax.set_ylabel("final global test loss (nats/token)")
    ax.grid(alpha=0.3)
    return ax


def plot_class_gaps(gaps: list[dict], names: list[str], ax=None):
    """Per length class, the final loss with DP minus without (above 0: DP costs the class more):
    one line per dict(scheme, alpha, condition, epsilon, classes={class: dict(mean, low, high)}),
    coloured by condition, dashed by ε, with its 95 % band."""
    ax = ax or plt.figure(figsize=(6, 4)).gca()
    levels = sorted({g["epsilon"] for g in gaps if g["epsilon"] is not None}, reverse=True)
    conditions = list(dict.fromkeys((g["scheme"], g["alpha"]) for g in gaps))
    for g in gaps:
        i = conditions.index((g["scheme"], g["alpha"]))
        color = condition_style(g["scheme"], g["alpha"], i)["color"]
        ls = EPSILON_DASHES[levels.index(g["epsilon"]) % len(EPSILON_DASHES)] if g["epsilon"] in levels else "-"
        cs = sorted(g["classes"])
        ms = [g["classes"][c]["mean"] for c in cs]
        half = [0.0 if g["classes"][c]["high"] is None else g["classes"][c]["high"] - m for c, m in zip(cs, ms)]
        _band_line(ax, {"x": cs, "mean": ms, "half": half},
                   f"{g['condition']}, ε = {fmt_epsilon(g['epsilon'])} vs {g['baseline']}", color, ls)
    classes = sorted({c for g in gaps for c in g["classes"]})
    ax.set_xticks(classes, [names[c] if c < len(names) else str(c) for c in classes], fontsize=7, rotation=20)
    ax.axhline(0.0, color="0.4", lw=0.8)
    ax.set_xlabel("length class")
    ax.set_ylabel("final loss, DP minus without (nats/token)")
    ax.grid(alpha=0.3)
    return ax


def privacy_figure(lines: list[dict], gaps: list[dict], names: list[str], title: str):
    """Client-level DP in one figure: utility against ε (plot_utility_epsilon), and beside it, where
    `gaps` has any, the class-by-class cost of DP (plot_class_gaps); each panel with its legend."""
    panels = 2 if gaps else 1
    fig, axes = plt.subplots(1, panels, figsize=(6.2 * panels, 4.4), squeeze=False)
    plot_utility_epsilon(lines, axes[0][0])
    axes[0][0].set_title("Utility against ε", fontsize=10)
    if gaps:
        plot_class_gaps(gaps, names, axes[0][1])
        axes[0][1].set_title("Loss per length class, DP minus without", fontsize=10)
    handles = {lab: h for ax in axes[0] for h, lab in zip(*ax.get_legend_handles_labels())}
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(len(handles), 3),
               fontsize=7, frameon=False)  # one legend for both panels
    fig.suptitle(wrap_title(title, fig.get_figwidth()), fontsize=10.5)
    rows = math.ceil(len(handles) / 3)
    fig.tight_layout(rect=(0, min(0.45, 0.035 * rows + 0.02), 1, 1))
    return fig
