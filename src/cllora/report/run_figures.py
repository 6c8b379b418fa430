"""The figures of one run: a partition's classes per client, Dirichlet samples on the simplex, and
a run's curves (global loss with the aggregation error, each client's losses, fairness).
`RunFigures` is the run listener that draws them into the run directory: the engine itself draws
nothing; the runner (cllora.runner) and the Flower server attach it. `plot_x(data, ax=None) ->
Axes`; every save goes through cllora.files.save_figure.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from cllora.engine.progress import RunProgress
from cllora.files import save_figure
from cllora.partition.registry import scheme_title, uses_alpha
from cllora.records import axis_label
from cllora.report.axes import class_labels, plt, round_axes
from cllora.analysis.stats import curve, finite

# ---------------------------------------------------------------- partitions

def client_curves(clients: list[dict], key: str) -> dict[int, tuple[list[int], list[float]]]:
    """{client id: (rounds, values)} of one clients.csv column, finite values only."""
    out: dict[int, tuple[list[int], list[float]]] = {}
    for row in clients:
        if finite(row.get(key)):
            xs, ys = out.setdefault(int(row["client_id"]), ([], []))
            xs.append(int(row["round"]))
            ys.append(float(row[key]))
    return dict(sorted(out.items()))


def plot_partition(partition: dict, ax=None):
    """Stacked bars of each client's examples per length class (the study's Fig. 4 for iid/length,
    Fig. 5 for quantity skew, where the bar heights are the client sizes). `partition` is the dict of
    `cllora.partition.core.partition_to_dict` (partition.json); an optional "length_measure" key names
    the unit of the class edges."""
    counts = np.array([c["class_counts"] for c in partition["clients"]], dtype=float)
    num_clients, num_classes = counts.shape
    ax = ax or plt.figure(figsize=(min(4 + 0.3 * num_clients, 14), 4)).gca()
    colors = plt.get_cmap("viridis")(np.linspace(0.05, 0.95, num_classes))
    labels = class_labels(partition.get("class_edges"), num_classes, partition.get("length_measure", ""))
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
    scheme = scheme_title(partition["scheme"])
    alpha = partition.get("alpha")
    skew = f", \u03b1 = {alpha:g}" if alpha is not None and uses_alpha(partition["scheme"]) else ""
    ax.set_title(f"{scheme}{skew}: {num_clients} clients")
    ax.set_xlabel("client")
    ax.set_ylabel("examples" if partition["scheme"] == "quantity" else "examples per length class")
    ax.set_xlim(-0.6, num_clients - 0.4)
    ax.legend(title="length class", fontsize=7, title_fontsize=8, loc="upper left",
              bbox_to_anchor=(1.0, 1.0), frameon=False)
    return ax


def partition_figure(partition: dict):
    """The partition plot of one run, sized to its number of clients."""
    n = len(partition.get("clients", []))
    fig, ax = plt.subplots(figsize=(min(4.5 + 0.28 * n, 13), 3.6))
    plot_partition(partition, ax=ax)
    fig.tight_layout()
    return fig


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


# ---------------------------------------------------------------- one run

def _plot_rounds(rounds: list[dict], key: str, ylabel: str, ax, label: str | None, **style):
    ax = ax or plt.figure(figsize=(6, 4)).gca()
    points = curve(rounds, key)
    ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", ms=3, label=label, **style)
    round_axes(ax, ylabel)
    return ax


def plot_global_loss(rounds: list[dict], ax=None, label: str | None = None, **style):
    """Global test loss per round (round 0 = before training)."""
    return _plot_rounds(rounds, "global_test_loss", axis_label("global_test_loss"), ax, label, **style)


def plot_fairness(rounds: list[dict], ax=None, label: str | None = None, **style):
    """Variance of the global model's test loss across all clients, per round (lower is fairer)."""
    return _plot_rounds(rounds, "fairness_var", f"fairness: {axis_label('fairness_var')}", ax, label, **style)


def plot_aggregation_error(rounds: list[dict], ax=None, label: str | None = None, **style):
    """Relative aggregation error ‖Σ p_k B_k A_k − B̄Ā‖ / ‖Σ p_k B_k A_k‖ of each round's client
    adapters (cllora.aggregate.error): how far averaging A and B separately is from the mean update."""
    return _plot_rounds(rounds, "agg_error", axis_label("agg_error"), ax, label, **style)


def plot_client_losses(clients: list[dict], key: str = "local_model_test_loss", ax=None,
                       max_clients: int = 20):
    """One curve per client: its local model's (or the global model's) loss on its own test split."""
    ax = ax or plt.figure(figsize=(6, 4)).gca()
    curves = client_curves(clients, key)
    for cid, (x, y) in list(curves.items())[:max_clients]:
        ax.plot(x, y, marker="o", ms=2, lw=1, label=f"client {cid}")
    round_axes(ax, "test loss on the client's own split")
    if 0 < len(curves) <= 10:
        ax.legend(fontsize=7, ncol=2)
    return ax


def save_run_plots(out: Path, rounds: list[dict], clients: list[dict]) -> list[Path]:
    """global_loss.png, client_loss.png and fairness.png of one run directory."""
    fig, ax = plt.subplots(figsize=(6, 4))
    plot_global_loss(rounds, ax)
    ax.set_title("Global model on the global test set")
    if curve(rounds, "agg_error"):  # beside the loss, on its own axis (dashed)
        twin = plot_aggregation_error(rounds, ax.twinx(), color="tab:red", ls="--", alpha=0.8)
        twin.grid(False)
    figures = [(fig, out / "global_loss.png")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    plot_client_losses(clients, "local_model_test_loss", axes[0])
    axes[0].set_title("Local models after local training")
    plot_client_losses(clients, "global_model_local_test_loss", axes[1])
    axes[1].set_title("Global model on each client's test split")
    figures.append((fig, out / "client_loss.png"))
    fig, ax = plt.subplots(figsize=(6, 4))
    plot_fairness(rounds, ax)
    ax.set_title("Fairness across clients")
    figures.append((fig, out / "fairness.png"))
    for fig, path in figures:
        fig.tight_layout()
        save_figure(fig, path, dpi=120)
    return [path for _, path in figures]


class RunFigures:
    """A run listener that draws the run's figures: partition.png as soon as the partition is
    written, and global_loss.png, client_loss.png and fairness.png when the run ends."""

    def run_started(self, out: Path, partition: dict) -> None:
        save_figure(plot_partition(partition).figure, Path(out) / "partition.png")

    def run_finished(self, out: Path, rounds: list[dict], clients: list[dict]) -> None:
        save_run_plots(Path(out), rounds, clients)


def drawing_figures(progress: RunProgress | None = None) -> RunProgress:
    """`progress` (a silent one if None) with a RunFigures listener, added once."""
    progress = progress or RunProgress(enabled=False)
    if not any(isinstance(listener, RunFigures) for listener in progress.listeners):
        progress.add_listener(RunFigures())
    return progress
