"""Figures of one run: global test loss per round, per-client local curves, fairness. Draw only."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _finite(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    pts = [(r["round"], r[key]) for r in rows if r.get(key) is not None and math.isfinite(r[key])]
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_global_loss(rounds: list[dict], ax=None, label: str | None = None, **style):
    """Global test loss per round (round 0 = before training)."""
    ax = ax or plt.figure(figsize=(6, 4)).gca()
    x, y = _finite(rounds, "global_test_loss")
    ax.plot(x, y, marker="o", ms=3, label=label, **style)
    ax.set_xlabel("communication round")
    ax.set_ylabel("global test loss (nats/token)")
    ax.grid(alpha=0.3)
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
    ax.set_xlabel("communication round")
    ax.set_ylabel("test loss on the client's own split")
    if 0 < len(ids) <= 10:
        ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    return ax


def plot_fairness(rounds: list[dict], ax=None, label: str | None = None, **style):
    """Variance of the global model's test loss across all clients, per round (lower is fairer)."""
    ax = ax or plt.figure(figsize=(6, 4)).gca()
    x, y = _finite(rounds, "fairness_var")
    ax.plot(x, y, marker="o", ms=3, label=label, **style)
    ax.set_xlabel("communication round")
    ax.set_ylabel("fairness: variance of client test loss")
    ax.grid(alpha=0.3)
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
