"""Figures of one run: global test loss per round, per-client local curves, fairness. Draw only."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _finite(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    pts = [(r["round"], r[key]) for r in rows if r.get(key) is not None and math.isfinite(r[key])]
    return [p[0] for p in pts], [p[1] for p in pts]


def _round_axes(ax, ylabel: str):
    """Rounds on x (whole numbers only), the quantity on y, a light grid."""
    ax.set_xlabel("communication round")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def plot_global_loss(rounds: list[dict], ax=None, label: str | None = None, **style):
    """Global test loss per round (round 0 = before training)."""
    ax = ax or plt.figure(figsize=(6, 4)).gca()
    x, y = _finite(rounds, "global_test_loss")
    ax.plot(x, y, marker="o", ms=3, label=label, **style)
    _round_axes(ax, "global test loss (nats/token)")
    return ax


def plot_client_losses(clients: list[dict], key: str = "local_model_test_loss", ax=None,
                       max_clients: int = 20):
    """One curve per client: its local model's (or the global model's) loss on its own test split."""
    ax = ax or plt.figure(figsize=(6, 4)).gca()
    ids = sorted({c["client_id"] for c in clients if c.get(key) is not None})
    for cid in ids[:max_clients]:
        pts = [(c["round"], c[key]) for c in clients
               if c["client_id"] == cid and c.get(key) is not None and math.isfinite(c[key])]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=2, lw=1, label=f"client {cid}")
    _round_axes(ax, "test loss on the client's own split")
    if 0 < len(ids) <= 10:
        ax.legend(fontsize=7, ncol=2)
    return ax


def plot_fairness(rounds: list[dict], ax=None, label: str | None = None, **style):
    """Variance of the global model's test loss across all clients, per round (lower is fairer)."""
    ax = ax or plt.figure(figsize=(6, 4)).gca()
    x, y = _finite(rounds, "fairness_var")
    ax.plot(x, y, marker="o", ms=3, label=label, **style)
    _round_axes(ax, "fairness: variance of client test loss")
    return ax


def save_run_plots(out: Path, rounds: list[dict], clients: list[dict]) -> list[Path]:
    """global_loss.png, client_loss.png and fairness.png of one run directory."""
    paths = []
    fig, ax = plt.subplots(figsize=(6, 4))
    plot_global_loss(rounds, ax)
    ax.set_title("Global model on the global test set")
    paths.append(_save(fig, out / "global_loss.png"))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    plot_client_losses(clients, "local_model_test_loss", axes[0])
    axes[0].set_title("Local models after local training")
    plot_client_losses(clients, "global_model_local_test_loss", axes[1])
    axes[1].set_title("Global model on each client's test split")
    paths.append(_save(fig, out / "client_loss.png"))
    fig, ax = plt.subplots(figsize=(6, 4))
    plot_fairness(rounds, ax)
    ax.set_title("Fairness across clients")
    paths.append(_save(fig, out / "fairness.png"))
    return paths


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return path


# ---------------------------------------------------------------- comparison figures (sweeps)

# Fixed colours for the study's conditions, so every figure reads the same way.
ALPHA_COLORS = {0.1: "#d62728", 1.0: "#ff7f0e", 100.0: "#1f77b4"}
IID_STYLE = {"color": "#222222", "ls": "--", "marker": "s"}


def condition_style(scheme: str, alpha: float | None, index: int = 0) -> dict:
    """Line style of a condition: IID dashed black, α = 0.1 / 1 / 100 red / orange / blue."""
    if scheme == "iid":
        return dict(IID_STYLE)
    color = ALPHA_COLORS.get(float(alpha)) if alpha is not None else None
    if color is None:
        color = plt.get_cmap("tab10")((index + 4) % 10)
    return {"color": color, "ls": "-", "marker": "o"}


def plot_condition_curves(curves: list[dict], ax=None, ylabel: str = "global test loss (nats/token)",
                          log_y: bool | str = False):
    """One curve per condition: dict(label, scheme, alpha, x, mean, std[, n]); a mean ± std band
    where std > 0 (several seeds)."""
    ax = ax or plt.figure(figsize=(6, 4)).gca()
    for i, c in enumerate(curves):
        style = condition_style(c["scheme"], c.get("alpha"), i)
        x, mean, std = (list(c[k]) for k in ("x", "mean", "std"))
        if not x:
            continue
        ax.plot(x, mean, label=c["label"], lw=1.6, ms=3.5, color=style["color"], ls=style["ls"],
                marker=style["marker"])
        if any(s > 0 for s in std):
            lo = [m - s for m, s in zip(mean, std)]
            hi = [m + s for m, s in zip(mean, std)]
            ax.fill_between(x, lo, hi, color=style["color"], alpha=0.15, lw=0)
    values = [v for c in curves for v in c["mean"] if v is not None and math.isfinite(v)]
    if log_y == "auto":
        log_y = bool(values) and min(values) > 0 and max(values) / min(values) > 20
    if log_y:
        ax.set_yscale("log")
    _round_axes(ax, ylabel)
    return ax


def _wrap(text: str, inches: float) -> str:
    """Break a title into lines that fit `inches` of width (about 13 characters an inch at 10 pt)."""
    return textwrap.fill(text, width=max(24, int(inches * 13)), break_long_words=False)


def comparison_figure(panels: list[dict], title: str, ylabel: str, log_y: bool | str = False):
    """Side-by-side panels (one per model/setting): dict(title, curves) each; one shared legend."""
    n = max(1, len(panels))
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols + 0.6, 3.6 * rows + 0.7), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        plot_condition_curves(panel["curves"], ax, ylabel, log_y)
        ax.set_title(_wrap(panel["title"], 4.6), fontsize=10)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    handles, labels = {}, []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    if handles:
        fig.legend([handles[lab] for lab in labels], labels, loc="lower center", ncol=min(len(labels), 6),
                   frameon=False, fontsize=9)
    fig.suptitle(_wrap(title, fig.get_figwidth()), fontsize=11)
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
        ax.set_title(_wrap(panel["title"], 5.2), fontsize=10)
        _round_axes(ax, ylabel if ax is axes[0][0] else "")  # the y axis is shared
        if 0 < len(panel["clients"]) <= 10:
            ax.legend(fontsize=7, ncol=2 if len(panel["clients"]) > 5 else 1)
    fig.suptitle(_wrap(title, fig.get_figwidth()), fontsize=10.5)
    fig.tight_layout()
    return fig


def partition_figure(partition: dict):
    """The partition plot of one run, sized to its number of clients."""
    from cllora.plots import plot_partition

    n = len(partition.get("clients", []))
    fig, ax = plt.subplots(figsize=(min(4.5 + 0.28 * n, 13), 3.6))
    plot_partition(partition, ax=ax)
    fig.tight_layout()
    return fig


def save_figure(fig, stem: Path, dpi: int = 130) -> tuple[Path, Path]:
    """Save `fig` as stem.png and stem.svg (atomically) and close it."""
    stem = Path(stem)
    paths = []
    for suffix in (".png", ".svg"):
        path = stem.parent / f"{stem.name}{suffix}"
        tmp = stem.parent / f".{stem.name}.tmp{suffix}"
        fig.savefig(tmp, dpi=dpi, metadata={"Date": None} if suffix == ".svg" else None)
        tmp.replace(path)
        paths.append(path)
    plt.close(fig)
    return paths[0], paths[1]
