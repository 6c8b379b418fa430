"""Experiment trackers (`--log-to tensorboard|mlflow`): every evaluated round's metrics, written to
local files in the run directory (`tensorboard/`, `mlruns/`), never over the network.

A tracker listens to the run's progress (`RunProgress.add_listener`): `round_done(row)` gets each
rounds.csv row. Each tracker's package is an optional extra; `check_available` says which one to
install before anything is written.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

from cllora.errors import UserError

EXTRAS = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow")}  # module, extra
NOT_METRICS = ("round",)
MLFLOW_PARAM_CHARS = 250  # MLflow's oldest limit on a parameter value's length


def check_available(kind: str | None) -> None:
    """A UserError naming the extra to install when `kind`'s package is missing."""

    if kind is None:
        return
    module, extra = EXTRAS[kind]
    if importlib.util.find_spec(module) is None:
        raise UserError(f"log_to {kind} needs the {module!r} package: pip install 'cllora[{extra}]'")


def metrics_of(row: dict) -> dict[str, float]:
    """The numeric, finite values of a rounds.csv row (the round number aside)."""
    out = {}
    for key, value in row.items():
        if key in NOT_METRICS or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            out[key] = float(value)
    return out


class TensorBoardTracker:
    """Scalars under `<run>/tensorboard`, one step per round (`tensorboard --logdir <run>`)."""

    def __init__(self, out: Path, config: dict):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(out) / "tensorboard"))
        self.writer.add_text("config", "\n".join(f"    {k} = {v!r}" for k, v in config.items()))

    def round_done(self, row: dict) -> None:
        if row.get("global_test_loss") is None:
            return  # not evaluated
        for key, value in metrics_of(row).items():
            self.writer.add_scalar(key, value, global_step=int(row["round"]))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class MlflowTracker:
    """One MLflow run in a local file store `<run>/mlruns` (`mlflow ui --backend-store-uri ...`)."""

    def __init__(self, out: Path, config: dict):
        import os

        import mlflow

        # MLflow 3 refuses a file store unless asked: the skinny client has no database backend,
        # and a file store is what needs no server, no network and no extra package
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.mlflow = mlflow
        mlflow.set_tracking_uri((Path(out) / "mlruns").resolve().as_uri())
        mlflow.set_experiment("cllora")
        self.run = mlflow.start_run(run_name=Path(out).name)
        mlflow.log_params({k: str(v)[:MLFLOW_PARAM_CHARS] for k, v in config.items()})

    def round_done(self, row: dict) -> None:
        if row.get("global_test_loss") is None:
            return
        self.mlflow.log_metrics(metrics_of(row), step=int(row["round"]))

    def close(self) -> None:
        self.mlflow.end_run()


def open_tracker(kind: str | None, out: Path, config: dict):
    """The tracker for `kind` writing into the run directory `out`, or None."""
    if kind is None:
        return None
    check_available(kind)
    return {"tensorboard": TensorBoardTracker, "mlflow": MlflowTracker}[kind](out, config)


def attach(progress, kind: str | None, out: Path, config: dict):
    """Open `kind`'s tracker in `out` and let it hear every round of `progress` (None for no tracker)."""
    tracker = open_tracker(kind, out, config)
    if tracker is not None:
        progress.add_listener(tracker)
    return tracker


def detach(progress, tracker) -> None:
    """Close a tracker from `attach` and stop it listening (a sweep reuses its progress display)."""
    if tracker is None:
        return
    tracker.close()
    if tracker in progress.listeners:
        progress.listeners.remove(tracker)
