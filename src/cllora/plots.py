"""Figures of partitions and sweeps: `plot_x(data, ax=None) -> Axes`, drawing only (no statistics)."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

SCHEME_TITLES = {"iid": "IID", "length": "length skew", "quantity": "quantity skew"}


def _class_labels(edges: list[float] | None, num_classes: int, unit: str) -> list[str]:
    """Legend text of each length class: class c holds lengths in (edges[c-1], edges[c]]."""
    if not edges:
        return [f"class {c}" for c in range(num_classes)]
    unit = f" {unit}" if unit else ""
    first = [f"0: \u2264 {edges[0]:g}{unit}"]
    middle = [f"{c}: {edges[c - 1]:g}\u2013{edges[c]:g}{unit}" for c in range(1, len(edges))]
    return first + middle + [f"{len(edges)}: > {edges[-1]:g}{unit}"]


def plot_partition(partition: dict, ax=None):
    """Stacked bars of each client's examples per length class (the study's Fig. 4 for iid/length,
    Fig. 5 for quantity skew, where the bar heights are the client sizes). `partition` is the dict of
    `cllora.partition.partition_to_dict` (partition.json); an optional "length_measure" key names
    the unit of the class edges."""
    counts = np.array([c["class_counts"] for c in partition["clients"]], dtype=float)
    num_clients, num_classes = counts.shape
    ax = ax or plt.figure(figsize=(min(4 + 0.3 * num_clients, 14), 4)).gca()
    colors = plt.get_cmap("viridis")(np.linspace(0.05, 0.95, num_classes))
    labels = _class_labels(partition.get("class_edges"), num_classes, partition.get("length_measure", ""))
    x = np.arange(num_clients)
    bottom = np.zeros(num_clients)
    width = 0.8 if num_clients <= 100 else 1.0
    for c in range(num_classes):
        ax.bar(x, counts[:, c], width, bottom=bottom, color=colors[c], label=labels[c], linewidth=0)
        bottom += counts[:, c]
    if partition["scheme"] == "quantity" and num_clients <= 30:
        for xi, total in zip(x, bottom):
            ax.annotate(f"{total:.0f}", (xi, total), ha="center", va="bottom", fontsize=7)
    if num_clients <= 30:
        ax.set_xticks(x)
    scheme = SCHEME_TITLES.get(partition["scheme"], partition["scheme"])
    alpha = partition.get("alpha")
    skew = "" if alpha is None or partition["scheme"] == "iid" else f", \u03b1 = {alpha:g}"
    ax.set_title(f"{scheme}{skew}: {num_clients} clients")
    ax.set_xlabel("client")
    ax.set_ylabel("examples" if partition["scheme"] == "quantity" else "examples per length class")
    ax.set_xlim(-0.6, num_clients - 0.4)
    ax.legend(title="length class", fontsize=7, title_fontsize=8, loc="upper left",
              bbox_to_anchor=(1.0, 1.0), frameon=False)
    return ax


_CORNERS = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, math.sqrt(3) / 2]])


def plot_dirichlet_simplex(samples_by_alpha: dict[float, np.ndarray], axes=None):
    """Dirichlet samples on the 3-class simplex (2-D triangle projection), one panel per alpha, side
    by side (the study's Fig. 3). Each array holds samples as rows of 3 shares summing to 1; points
    are coloured by their largest share. Returns the list of Axes."""
    if axes is None:
        fig = plt.figure(figsize=(3.2 * len(samples_by_alpha), 3.4))
        axes = fig.subplots(1, len(samples_by_alpha), squeeze=False)[0]
    axes = list(np.ravel(axes))
    colors = plt.get_cmap("viridis")(np.linspace(0.05, 0.95, 3))
    for ax, (alpha, samples) in zip(axes, samples_by_alpha.items()):
        samples = np.asarray(samples, dtype=float)
        if samples.ndim != 2 or samples.shape[1] != 3:
            raise ValueError(f"samples for alpha={alpha:g} must have shape (n, 3), got {samples.shape}")
        points = samples @ _CORNERS
        ax.fill(*_CORNERS.T, facecolor="0.96", edgecolor="0.4", linewidth=0.8)
        ax.scatter(points[:, 0], points[:, 1], s=5, alpha=0.5, linewidths=0,
                   c=colors[np.argmax(samples, axis=1)])
        for k, (cx, cy) in enumerate(_CORNERS):
            ax.annotate(f"class {k}", (cx, cy), ha="center", fontsize=7,
                        xytext=(0, 4 if k == 2 else -10), textcoords="offset points")
        ax.set_title(f"\u03b1 = {alpha:g}")
        ax.set_aspect("equal")
        ax.set_xlim(-0.08, 1.08)
        ax.set_ylim(-0.1, 0.95)
        ax.axis("off")
    return axes
