"""A run directory's lifecycle: check, create, write (config, partition, CSVs, checkpoint,
summary), resume and summarize, made with the atomic writers of `cllora.files` (re-exported
here, so a run's writer is one module).

Every file is written atomically (temporary file, then rename), so a run killed at any moment
never leaves a half-written CSV or checkpoint. The checkpoint (global adapter, the strategy's
server and client states as packed by cllora.aggregate.checkpoint_state, and the last completed round in
its metadata) is written after the CSVs; on resume, CSV rows past it are dropped.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from cllora import curves
from cllora.config.settings import RunConfig, from_dict
from cllora.errors import UserError
from cllora.files import (  # noqa: F401
    atomic_write_bytes,
    check_output_dir,
    check_output_file,
    atomic_write_text,
    read_csv,
    read_json,
    read_npz,  # (the run's writer)
    save_figure,
    write_csv,
    write_json,
    write_npz,
)
from cllora.privacy.randomness import RECORD_KEY, noise_source_of
from cllora.records.columns import client_columns, round_columns

if TYPE_CHECKING:  # the checkpoint functions import torch lazily: reading records needs no torch
    import torch

RUN_FILES = ("config.json", "partition.json", "rounds.csv", "clients.csv", "summary.json", "report.html",
             "claims.json", "checkpoint.safetensors", "global_loss.png", "client_loss.png", "partition.png",
             "fairness.png", "test_losses.npz", "split_losses.npz")
RUN_DIRS = ("adapter", "tensorboard", "mlruns")  # the trackers' local stores (cllora.engine.tracking)
TEST_LOSSES = "test_losses.npz"  # per-text global test losses (format: cllora.engine.evaluation.save_test_losses)
SPLIT_LOSSES = "split_losses.npz"  # per-text losses on the clients' splits (cllora.engine.evaluation.save_split_losses)


def is_run_dir(path: Path) -> bool:
    return (path / "config.json").is_file()


def is_sweep_dir(path: Path) -> bool:
    """A sweep's root: it holds index.json (cllora.sweep.index)."""
    return (Path(path) / "index.json").is_file()


def checkpoint_round(out: Path) -> int:
    """The last completed round the checkpoint records, -1 without one (or with a damaged one:
    the engine says so when it resumes)."""
    from safetensors import safe_open

    path = Path(out) / "checkpoint.safetensors"
    if not path.is_file():
        return -1
    try:
        with safe_open(str(path), framework="pt") as fh:
            return int(fh.metadata()["round"])
    except Exception:
        return -1


def run_status(out: Path, rounds: int | None = None) -> tuple[str, int]:
    """The one "run complete" rule: ("done" | "partial" | "pending", last completed round or -1).

    Done once summary.json counts `rounds` completed rounds (default: the rounds of the saved
    config, so a run asked to go further is partial again); partial for any other run directory;
    pending where no run has started.
    """
    out = Path(out)
    if not is_run_dir(out):
        return "pending", -1
    summary = read_json(out / "summary.json") or {}
    if rounds is None:
        rounds = ((read_json(out / "config.json") or {}).get("config") or {}).get("rounds")
    completed = summary.get("rounds_completed")
    if completed is not None and rounds is not None and completed >= rounds:
        return "done", int(completed)
    return "partial", checkpoint_round(out)


def saved_config(path: Path) -> RunConfig:
    try:
        return from_dict(json.loads((path / "config.json").read_text())["config"])
    except (OSError, KeyError, json.JSONDecodeError) as exc:
        raise UserError(f"{str(path)!r} does not hold a readable cllora config.json ({exc})") from None


def check_run_dir(out: Path, config: RunConfig, *, resume: bool, overwrite: bool) -> None:
    """Refuse to mix runs in `out` (no side effects: called before any work starts)."""
    if resume and overwrite:
        raise UserError(f"--resume {str(out)!r} continues a run and --overwrite replaces it; pass one of them")
    if resume:
        if not is_run_dir(out):
            raise UserError(f"--resume {str(out)!r}: not a cllora run directory (no config.json)")
        check_output_dir(out, "--resume")
        check_compatible(saved_config(out), config, out)
        return
    check_output_dir(out, "--out")
    if is_sweep_dir(out):
        raise UserError(f"--out {str(out)!r} holds a sweep (index.json); a run needs its own folder")
    if is_run_dir(out) and not overwrite:
        raise UserError(f"--out {str(out)!r} already holds a run; pass --resume to continue it or "
                        "--overwrite to replace it")


def init_run_dir(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Create `out` once the run is known to start; with overwrite, remove only cllora's own files."""
    if resume:
        return
    if out.exists() and overwrite:
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)
        for name in RUN_DIRS:
            shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)


RESUME_MAY_CHANGE = ("rounds", "precision", "device", "log_to", "client_gpus")  # a run may go further; see
# check_resume_runtime for precision/device; a tracker or a GPU share changes no result


def config_differences(saved: RunConfig, new: RunConfig, allowed: tuple[str, ...] = ("rounds",)) -> list[str]:
    """Settings that differ between two configs, `allowed` ones aside (by default `rounds`: a run
    may always go further)."""
    a, b = saved.to_dict(), new.to_dict()
    return [k for k in a if k not in allowed and a[k] != b[k]]


def check_compatible(saved: RunConfig, new: RunConfig, out: Path) -> None:
    """A resumed run may only change `rounds` (to go further) and, explicitly, precision or device
    (checked against what the run resolved to by check_resume_runtime); anything else changes the
    results."""
    a, b = saved.to_dict(), new.to_dict()
    diff = config_differences(saved, new, RESUME_MAY_CHANGE)
    if diff:
        k = diff[0]
        raise UserError(f"--resume {str(out)!r}: the run was made with {k}={a[k]!r}, not {b[k]!r}; "
                        f"a resumed run may only change rounds (differs: {', '.join(diff)})")


def check_resume_runtime(out: Path, config: RunConfig, device: str, precision: str) -> None:
    """A resume must compute as the run did: where its precision or device was "auto" and now
    resolves differently (another machine), refuse, naming both, unless the user set it explicitly."""
    recorded = read_json(out / "config.json") or {}
    for key, now in (("precision", precision), ("device", device)):
        before = recorded.get(key)
        if before is not None and before != now and getattr(config, key) == "auto":
            raise UserError(f"--resume {str(out)!r}: the run computed in {key} {before}, but {key}=auto "
                            f"resolves to {now} here; pass --{key} {before} to continue as it was, or "
                            f"--{key} {now} to continue in {now} (recorded in config.json)")


def noise_record(source: str | None) -> dict:
    """config.json's record of where the run's DP noise and client sample came from ("os" or
    "seeded"; nothing without DP)."""
    return {} if source is None else {RECORD_KEY: source}


def recorded_noise_source(out: Path) -> str | None:
    """The DP noise source a run directory's config.json records (cllora.privacy.randomness:
    "seeded" for a DP run made before the record existed)."""
    return noise_source_of(read_json(out / "config.json") or {})


def check_resume_state(out: Path, config: RunConfig, adapter_shapes: dict[str, tuple], partition: dict) -> None:
    """Before a resume writes anything: what the run directory holds must be what this config makes.

    config.json may have been edited, so it is compared with what the run computed: the settings
    the checkpoint recorded (checkpoints since issue 32), the global adapter's tensor names and shapes
    (another model or rank), the clients' partition (other data, scheme or seed) and whether the
    rounds so far were private (DP switched on or off). A UserError naming the key where they differ."""
    ckpt = load_checkpoint(out) if (out / "checkpoint.safetensors").is_file() else None
    if ckpt is not None:
        _check_recorded_settings(out, config, ckpt[2].get("config"))
        _check_adapter(out, ckpt[1], adapter_shapes)
    saved_partition = read_json(out / "partition.json")
    if saved_partition is not None and _clients(saved_partition) != _clients(partition):
        raise UserError(f"--resume {str(out)!r}: the data, scheme or seed in config.json give other clients "
                        "than partition.json records; the run cannot continue on other data (was "
                        "config.json edited?)")
    _check_dp_history(out, config)


def _check_recorded_settings(out: Path, config: RunConfig, recorded: dict | None) -> None:
    if recorded is None:  # a checkpoint from before issue 32: the other checks stand in
        return
    before, now = from_dict(recorded).to_dict(), config.to_dict()
    diff = [k for k in before if k not in RESUME_MAY_CHANGE and before[k] != now.get(k)]
    if diff:
        k = diff[0]
        raise UserError(f"--resume {str(out)!r}: the rounds so far were computed with {k}={before[k]!r}, but "
                        f"config.json now says {now.get(k)!r} (edited?); a resume cannot change "
                        f"{', '.join(diff)}")


def _check_adapter(out: Path, state: dict, shapes: dict[str, tuple]) -> None:
    saved = {k: tuple(v.shape) for k, v in state.items() if k in shapes}
    missing = sorted(set(shapes) - set(saved))
    changed = sorted(k for k in saved if saved[k] != tuple(shapes[k]))
    if missing or changed:
        name = (missing or changed)[0]
        raise UserError(f"--resume {str(out)!r}: the checkpoint's adapter does not fit the model and "
                        f"rank in config.json ({'no tensor' if missing else 'another shape for'} {name}); "
                        "was config.json edited to another model or rank?")


def _clients(partition: dict) -> list:
    clients = partition.get("clients") if isinstance(partition, dict) else None
    return [c.get("indices") if isinstance(c, dict) else c for c in clients or []]


def _check_dp_history(out: Path, config: RunConfig) -> None:
    """DP on now must mean DP on in every finished round, and off must mean off (a guarantee cannot
    start half-way, and a private run's ε must not be dropped)."""
    path = out / "rounds.csv"
    if not path.is_file():
        return
    last = checkpoint_round(out)
    rows = [r for r in read_csv(path) if isinstance(r.get("round"), int) and 1 <= r["round"] <= last]
    if not rows:
        return
    private = [r.get("dp_epsilon") is not None for r in rows]
    if config.dp_clip is not None and not all(private):
        raise UserError(f"--resume {str(out)!r}: config.json sets dp_clip (--dp-clip), but rounds "
                        f"{', '.join(str(r['round']) for r, p in zip(rows, private) if not p)} were not private; "
                        "a DP guarantee cannot start half-way: start a new run")
    if config.dp_clip is None and any(private):
        raise UserError(f"--resume {str(out)!r}: the rounds so far were private (dp_epsilon in rounds.csv), "
                        "but config.json has no dp_clip (--dp-clip); continuing without DP would drop the "
                        "guarantee: restore the DP settings")


RUNTIME_KEYS = ("device", "device_name", "precision", "tf32", "deterministic", "torch_version",
                "cuda_version", "device_fallback")  # cllora.device.describe: what a session computed on


def write_config(out: Path, config: RunConfig, extra: dict, *, resume: bool = False) -> None:
    """config.json: the resolved config and what it resolved to. A resume keeps what the run was
    started with (its precision and device among them), updates `rounds`, and appends what this
    session resolved to under "resumes"."""
    if not resume:
        write_json(out / "config.json", {"config": config.to_dict(), **extra})
        return
    recorded = read_json(out / "config.json") or {"config": config.to_dict(), **extra}
    recorded["config"]["rounds"] = config.rounds
    session = {**{k: extra.get(k) for k in RUNTIME_KEYS},
               "from_round": load_checkpoint(out)[0] if (out / "checkpoint.safetensors").is_file() else 0}
    recorded.setdefault("resumes", []).append(session)
    write_json(out / "config.json", recorded)


# ---------------------------------------------------------------- checkpoint

def save_checkpoint(out: Path, round_num: int, state: dict[str, torch.Tensor], meta: dict) -> None:
    from safetensors.torch import save

    blob = save({k: v.contiguous() for k, v in state.items()},
                metadata={"round": str(round_num), "meta": json.dumps(meta)})
    atomic_write_bytes(out / "checkpoint.safetensors", blob)


def load_checkpoint(out: Path) -> tuple[int, dict[str, torch.Tensor], dict] | None:
    from safetensors import safe_open

    path = out / "checkpoint.safetensors"
    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
        return int(meta["round"]), {k: fh.get_tensor(k) for k in fh.keys()}, json.loads(meta["meta"])


def load_progress(out: Path) -> tuple[int, dict | None, dict, list[dict], list[dict]]:
    """(last completed round or -1, global state, metadata, round rows, client rows) of a run."""
    ckpt = load_checkpoint(out)
    if ckpt is None:
        return -1, None, {}, [], []
    last, state, meta = ckpt
    rounds = [r for r in read_csv(out / "rounds.csv") if r["round"] <= last] \
        if (out / "rounds.csv").is_file() else []
    clients = [r for r in read_csv(out / "clients.csv") if r["round"] <= last] \
        if (out / "clients.csv").is_file() else []
    return last, state, meta, rounds, clients


def save_round(out: Path, round_num: int, state: dict, rounds: list[dict], clients: list[dict],
               meta: dict, num_classes: int) -> None:
    """CSVs first, then the checkpoint that marks the round complete."""
    write_csv(out / "rounds.csv", round_columns(num_classes), rounds)
    write_csv(out / "clients.csv", client_columns(), clients)
    save_checkpoint(out, round_num, state, meta)


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def summarize(rounds: list[dict], extra: dict) -> dict:
    """Final and best global test loss, the best round (where overfitting begins), how far the
    last round ends above the best and how much the curve fluctuates (cllora.curves), totals."""
    losses = [(r["round"], r["global_test_loss"]) for r in rounds if r.get("global_test_loss") is not None]
    best_round, best = min(losses, key=lambda x: x[1]) if losses else (None, None)
    final = rounds[-1] if rounds else {}
    overfit = curves.overfit(losses)[0] if losses else None
    return {
        "rounds_completed": final.get("round", 0),
        "initial_test_loss": losses[0][1] if losses else None,
        "final_test_loss": final.get("global_test_loss"),
        "final_test_ppl": final.get("global_test_ppl"),
        "best_test_loss": best,
        "best_round": best_round,
        "overfit": overfit,  # final minus best (cllora.curves)
        "fluctuation": _finite_or_none(curves.fluctuation(losses)),  # mean |second difference|
        "late_trend": _finite_or_none(curves.late_trend(losses)),  # slope over the last half of the rounds
        "final_fairness_var": final.get("fairness_var"),
        "total_bytes": final.get("bytes_cumulative", 0),
        "total_train_seconds": sum(r.get("train_seconds") or 0 for r in rounds),
        "total_eval_seconds": sum(r.get("eval_seconds") or 0 for r in rounds),
        "failed_client_updates": sum(r.get("num_failed") or 0 for r in rounds),
        **extra,
    }
