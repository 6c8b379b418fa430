"""What every cllora figure shares: matplotlib without a display (Agg; import `plt` from here), the rounds axis, titles
wrapped to the figure's width, and the legend text of the length classes."""

from __future__ import annotations

import textwrap

import matplotlib

matplotlib.use("Agg")  # no display: figures are files
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

__all__ = ["plt", "round_axes", "wrap_title", "class_labels"]


def round_axes(ax, ylabel: str):
    """Rounds on x (whole numbers only), the quantity on y, a light grid."""
    ax.set_xlabel("communication round")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def wrap_title(text: str, inches: float) -> str:
    """Break a title into lines that fit `inches` of width (about 13 characters an inch at 10 pt)."""
    return textwrap.fill(text, width=max(24, int(inches * 13)), break_long_words=False)


def class_labels(edges: list[float] | None, num_classes: int, unit: str) -> list[str]:
    """Legend text of each length class: class c holds lengths in (edges[c-1], edges[c]]."""
    if not edges:
        return [f"class {c}" for c in range(num_classes)]
    unit = f" {unit}" if unit else ""
    first = [f"0: \u2264 {edges[0]:g}{unit}"]
    middle = [f"{c}: {edges[c - 1]:g}\u2013{edges[c]:g}{unit}" for c in range(1, len(edges))]
    return first + middle + [f"{len(edges)}: > {edges[-1]:g}{unit}"]
