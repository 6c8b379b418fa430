"""The claims at a glance: one forest plot drawn from the claim records as claims.json holds them
(claim, unit, verdict, comparisons[*] with label, effect, low, high, seeds, verdict, decides). A
panel per testable claim on its own x axis (its unit), a row per comparison: the effect with its
95 % interval, the claim's boundary as a vertical line, the verdict as colour; settings shown
that do not decide are grey. Drawing only: every number comes from cllora.analysis."""

from __future__ import annotations

import math
from typing import Callable

from cllora.analysis.claims import LITTLE_LOCAL_EFFECT
from cllora.analysis.plans import BUDGET_NAMES
from cllora.report.axes import plt

VERDICT_COLORS = {"supported": "#1a7f37", "contradicted": "#cf222e", "inconclusive": "#bf8700",
                  "not testable": "#8c959f"}
SHOWN = "#b1b8c0"  # a setting shown beside the deciding ones, not deciding
ROW_IN = 0.13  # inches per deciding row
SHOWN_IN = 0.05  # inches per row shown that does not decide: thin grey lines, labelled as a block
PANEL_IN = 0.32  # inches per panel for its title and x axis


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
    """(factor, x label): a '%' claim is drawn in percent; else nats², where its test says so,
    else nats/token."""
    if claim.get("unit") == "%":
        return 100.0, "effect (%)"
    return 1.0, "effect (nats²)" if "nats²" in claim.get("test", "") else "effect (nats/token)"


def forest_figure(claims: list[dict], name: Callable[[str], str] = str):
    """The figure, or None when no claim has an effect to show. `name` turns a comparison's label
    into the setting's name."""
    several = len({c.get("budget") for c in claims}) > 1  # then each panel names its budget
    panels = [(c, forest_rows(c, name)) for c in claims]
    panels = [(c, rows) for c, rows in panels if rows]
    if not panels:
        return None
    heights = [sum(ROW_IN if r["decides"] else SHOWN_IN for r in rows) + PANEL_IN for _, rows in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(12, sum(heights) + 0.5), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, (claim, rows) in zip(axes[:, 0], panels):
        scale, xlabel = _scale(claim)
        steps = [1.0 if r["decides"] else SHOWN_IN / ROW_IN for r in rows]
        y = [sum(steps[i + 1:]) for i in range(len(rows))]  # top to bottom, grey rows close together
        for yy, r in zip(y, rows):
            color = VERDICT_COLORS.get(r["verdict"], SHOWN) if r["decides"] else SHOWN
            if r["low"] is not None:
                ax.plot([scale * r["low"], scale * r["high"]], [yy, yy], color=color,
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
        ax.set_ylim(min(y) - 0.6, max(y) + 0.6)
        ax.set_xlim(*_xlim(rows, [scale * b for b in boundaries(claim)], scale))
        ax.tick_params(axis="x", labelsize=7, pad=1)
        ax.set_xlabel(xlabel, fontsize=7, labelpad=1)
        ax.grid(axis="x", alpha=0.3)
        verdict = claim.get("verdict", "")
        at = f" ({BUDGET_NAMES.get(claim.get('budget'), claim.get('budget'))})" if several else ""
        ax.set_title(f"{claim['claim']}{at}: {verdict}", fontsize=8.5, loc="left", pad=3,
                     color=VERDICT_COLORS.get(verdict, "0.2"), fontweight="bold")
    handles = [plt.Line2D([], [], color=c, marker="D", lw=2, label=v) for v, c in VERDICT_COLORS.items()
               if v != "not testable"]
    handles.append(plt.Line2D([], [], color=SHOWN, marker="o", lw=1.4, label="shown, does not decide"))
    handles.append(plt.Line2D([], [], color="0.25", lw=0.9, ls="--", label="the claim's boundary (0 solid)"))
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), frameon=False, fontsize=7.5,
               bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / (sum(heights) + 0.5)), h_pad=0.4)
    return fig
