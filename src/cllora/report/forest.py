"""The claims at a glance: one forest plot drawn from the claim records as claims.json holds them
(claim, unit, verdict, comparisons[*] with label, effect, low, high, seeds, verdict, decides). A
panel per testable claim on its own x axis (its unit), its budgets side by side, a row per
comparison: the effect with its 95 % interval, the claim's boundary as a vertical line, the
verdict as colour; settings shown that do not decide are grey. Drawing only: every number comes
from cllora.analysis."""

from __future__ import annotations

import math
from typing import Callable

from cllora.analysis.claims import LITTLE_LOCAL_EFFECT, records_by_claim
from cllora.analysis.plans import budget_name
from cllora.report.axes import plt

VERDICT_COLORS = {"supported": "#1a7f37", "contradicted": "#cf222e", "inconclusive": "#bf8700",
                  "not testable": "#8c959f"}
SHOWN = "#b1b8c0"  # a setting shown beside the deciding ones, not deciding
ROW_IN = 0.12  # inches per deciding row
SHOWN_ROWS = 1.0  # rows' height for all rows shown that do not decide: thin grey lines in one labelled band
PANEL_IN = 0.25  # inches per panel for its title and x tick labels (the unit sits beside them)
PAD_ROWS = 0.7  # rows' height of the y margins inside a panel (0.35 above the top row, 0.35 below the last)


def boundaries(claim: dict) -> list[float]:
    """Where the claim's boundary sits on its effect axis: its declared margin (bound_low and
    bound_high, or margin for ±margin, where the record holds them), else the ± margin of a "little
    effect" claim (analysis.claims.LITTLE_LOCAL_EFFECT nats), else 0."""
    if claim.get("margin") is not None:
        return [-float(claim["margin"]), float(claim["margin"])]
    bounds = [claim[k] for k in ("bound_low", "bound_high") if claim.get(k) is not None and math.isfinite(claim[k])]
    if bounds:
        return bounds
    if "little effect" in claim.get("claim", "") or "within ±" in claim.get("test", ""):
        return [-LITTLE_LOCAL_EFFECT, LITTLE_LOCAL_EFFECT]
    return [0.0]


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def forest_rows(claim: dict, name: Callable[[str], str]) -> list[dict]:
    """The rows of a claim's panel: each comparison with an interval (or at least an effect),
    deciding ones first; label = the setting's name and its seeds."""
    rows = []
    for c in claim.get("comparisons", []):
        if not _finite(c.get("effect")):
            continue
        low, high = c.get("low"), c.get("high")
        if not (_finite(low) and _finite(high)) and c.get("text_interval"):
            low, high = c["text_interval"]
        rows.append({"label": f"{name(c['label'])} ({c.get('seeds') or 0} seeds)", "effect": c["effect"],
                     "low": low if _finite(low) else None, "high": high if _finite(high) else None,
                     "decides": bool(c.get("decides")), "verdict": c.get("verdict", "inconclusive")})
    return sorted(rows, key=lambda r: not r["decides"])


def _xlim(rows: list[dict], bounds: list[float], scale: float) -> tuple[float, float]:
    """The x range of a panel: the deciding rows' intervals and the boundary, with a margin; a grey
    row that runs past it is cut at the edge (its numbers are in the evidence table)."""
    keep = [r for r in rows if r["decides"]] or rows
    xs = bounds + [scale * v for r in keep for v in (r["effect"], r["low"], r["high"]) if v is not None]
    low, high = min(xs), max(xs)
    pad = 0.08 * (high - low or abs(high) or 1.0)
    return low - pad, high + pad


def _scale(claim: dict) -> tuple[float, str]:
    """(factor, x label: the effect's unit): a '%' claim is drawn in percent; else nats², where its
    test says so, else nats/token."""
    if claim.get("unit") == "%":
        return 100.0, "(%)"
    return 1.0, "(nats²)" if "nats²" in claim.get("test", "") else "(nats/token)"


def claim_panels(claims: list[dict], name: Callable[[str], str] = str) -> list[dict]:
    """One panel per claim: {claim (its first record), rows, title, verdict (its colour; "" when the
    budgets disagree)}. A claim recorded at several budgets (the quick scale, the study budget) is
    one panel on one axis, its rows labelled by budget, so the two read side by side (deciding rows
    by budget, then one grey band of every budget's rows that do not decide); claims with no row to
    draw are left out."""
    several = len({c.get("budget") for c in claims}) > 1
    panels = []
    for records in records_by_claim(claims).values():
        drawn = [(r, forest_rows(r, name)) for r in records]
        drawn = [(r, rows) for r, rows in drawn if rows]
        if not drawn:
            continue
        first = drawn[0][0]
        if len(drawn) > 1:
            rows = [{**row, "label": f"{budget_name(r.get('budget'))} · {row['label']}"} for r, mine in drawn for row in mine]
            rows.sort(key=lambda row: not row["decides"])  # every budget's grey rows in one band, last
            title = f"{first['claim']}: " + " · ".join(f"{budget_name(r.get('budget'))}: {r.get('verdict', '')}" for r, _ in drawn)
        else:
            rows = drawn[0][1]
            at = f" ({budget_name(first.get('budget'))})" if several else ""
            title = f"{first['claim']}{at}: {first.get('verdict', '')}"
        verdicts = {r.get("verdict", "") for r, _ in drawn}
        panels.append({"claim": first, "rows": rows, "title": title,
                       "verdict": verdicts.pop() if len(verdicts) == 1 else ""})
    return panels


def forest_figure(claims: list[dict], name: Callable[[str], str] = str):
    """The figure, or None when no claim has an effect to show. `name` turns a comparison's label
    into the setting's name."""
    panels = claim_panels(claims, name)
    if not panels:
        return None
    heights = [ROW_IN * (max(_y(p["rows"])) + PAD_ROWS) + PANEL_IN for p in panels]  # a panel always has rows
    height = max(sum(heights) + 0.5, 1.2)  # + the legend; a lone one-row panel still fits its title
    fig, axes = plt.subplots(len(panels), 1, figsize=(12, height), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, panel in zip(axes[:, 0], panels):
        claim, rows = panel["claim"], panel["rows"]
        scale, xlabel = _scale(claim)
        y = _y(rows)
        left, right = _xlim(rows, [scale * b for b in boundaries(claim)], scale)
        for yy, r in zip(y, rows):
            color = VERDICT_COLORS.get(r["verdict"], SHOWN) if r["decides"] else SHOWN
            if r["low"] is not None:  # cut at the panel's edges (Agg does not clip a line far outside them)
                ax.plot([max(left, scale * r["low"]), min(right, scale * r["high"])], [yy, yy], color=color,
                        lw=2.2 if r["decides"] else 0.9, solid_capstyle="butt")
            ax.plot([scale * r["effect"]], [yy], marker="D" if r["decides"] else "o", color=color,
                    ms=5 if r["decides"] else 2)
        for b in boundaries(claim):
            ax.axvline(scale * b, color="0.25", lw=0.9, ls="--" if b else "-")
        ticks = [(yy, r["label"]) for yy, r in zip(y, rows) if r["decides"]]
        shown = [yy for yy, r in zip(y, rows) if not r["decides"]]
        if shown:  # the grey block gets one label; each setting is named in the evidence table
            ticks.append(((max(shown) + min(shown)) / 2, f"{len(shown)} more shown, not deciding"))
        ax.set_yticks([t[0] for t in ticks], [t[1] for t in ticks], fontsize=7)
        if shown:
            ax.get_yticklabels()[-1].set_color("0.5")
        ax.set_ylim(min(y) - PAD_ROWS / 2, max(y) + PAD_ROWS / 2)
        ax.set_xlim(left, right)
        ax.tick_params(axis="x", labelsize=6.5, pad=1, length=2)
        ax.set_xlabel(xlabel, fontsize=7, ha="left", va="top")  # beside the tick labels: no line of its own
        ax.xaxis.set_label_coords(1.004, -0.02)
        ax.grid(axis="x", alpha=0.3)
        ax.set_title(panel["title"], **_title_style(panel))
    handles = [plt.Line2D([], [], color=c, marker="D", lw=2, label=v) for v, c in VERDICT_COLORS.items()
               if v != "not testable"]
    handles.append(plt.Line2D([], [], color=SHOWN, marker="o", lw=1.4, label="shown, does not decide"))
    handles.append(plt.Line2D([], [], color="0.25", lw=0.9, ls="--", label="the claim's boundary (0 solid)"))
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), frameon=False, fontsize=7.5,
               bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout(rect=(0, 0, 0.95, 1 - 0.3 / height), h_pad=0.3)  # the right 5 %: units
    for ax, panel in zip(axes[:, 0], panels):  # each title from the figure's left edge: the full width
        box = ax.get_position()
        ax.set_title(panel["title"], x=(0.005 - box.x0) / box.width, **_title_style(panel))
    return fig


def _y(rows: list[dict]) -> list[float]:
    """Each row's height on its panel, in deciding rows (top row highest, last row 0): deciding rows
    one apart, the grey rows of a block packed into SHOWN_ROWS with a row's gap either side."""
    grey = max(1, sum(not r["decides"] for r in rows) - 1)
    y, at = [], 0.0
    for i in range(len(rows) - 1, -1, -1):  # from the bottom up
        if i < len(rows) - 1:
            packed = not rows[i]["decides"] and not rows[i + 1]["decides"]
            at += SHOWN_ROWS / grey if packed else 1.0
        y.append(at)
    return y[::-1]


def _title_style(panel: dict) -> dict:
    return {"fontsize": 8.5, "loc": "left", "pad": 1.5, "fontweight": "bold",
            "color": VERDICT_COLORS.get(panel["verdict"], "0.2")}
