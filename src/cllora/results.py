"""A run directory: resolved config, partition, per-round and per-client CSVs, checkpoint, summary.

Every file is written atomically (temporary file, then rename), so a run killed at any moment
never leaves a half-written CSV or checkpoint. The checkpoint (global adapter + last completed
round in its metadata) is written after the CSVs; on resume, CSV rows past it are dropped.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable

import torch

from cllora.config import RunConfig, from_dict
from cllora.errors import UserError

ROUND_COLUMNS = (
    "round", "global_test_loss", "global_test_ppl",
    "fairness_var", "fairness_std", "fairness_min", "fairness_max", "fairness_worst10", "fairness_mean",
    "local_models_test_loss_mean", "local_models_var", "local_models_global_test_loss_mean",
    "num_participants", "num_failed", "train_loss_mean",
    "bytes_up", "bytes_down", "bytes_cumulative",
    "train_seconds", "eval_seconds", "overhead_seconds", "round_seconds",
)
CLIENT_COLUMNS = (
    "round", "client_id", "participated", "failed", "num_train_examples", "train_loss", "train_seconds",
    "local_model_test_loss", "local_model_global_test_loss", "global_model_local_test_loss", "error",
)
TIMING_COLUMNS = ("train_seconds", "eval_seconds", "overhead_seconds", "round_seconds")
RUN_FILES = ("config.json", "partition.json", "rounds.csv", "clients.csv", "summary.json", "report.html",
             "checkpoint.safetensors", "global_loss.png", "client_loss.png", "partition.png",
             "fairness.png")
RUN_DIRS = ("adapter",)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(obj):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)  # shortest round-trip form: identical runs give identical bytes
    return "" if value is None else str(value)


def write_csv(path: Path, columns: Iterable[str], rows: list[dict]) -> None:
    columns = list(columns)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_fmt(row.get(c)) for c in columns])
    atomic_write_text(path, buf.getvalue())


def read_csv(path: Path) -> list[dict]:
    """Rows of a run CSV with numbers parsed (empty cells become None, text stays text)."""
    def parse(v: str):
        if v == "":
            return None
        for cast in (int, float):
            try:
                return cast(v)
            except ValueError:
                pass
        return v

    with open(path, newline="") as fh:
        return [{k: parse(v) for k, v in row.items()} for row in csv.DictReader(fh)]


# ---------------------------------------------------------------- the run directory

def is_run_dir(path: Path) -> bool:
    return (path / "config.json").is_file()


def saved_config(path: Path) -> RunConfig:
    try:
        return from_dict(json.loads((path / "config.json").read_text())["config"])
    except (OSError, KeyError, json.JSONDecodeError) as exc:
        raise UserError(f"{str(path)!r} does not hold a readable cllora config.json ({exc})") from None


def check_run_dir(out: Path, config: RunConfig, *, resume: bool, overwrite: bool) -> None:
    """Refuse to mix runs in `out` (no side effects: called before any work starts)."""
    if resume:
        if not is_run_dir(out):
            raise UserError(f"--resume {str(out)!r}: not a cllora run directory (no config.json)")
        check_compatible(saved_config(out), config, out)
        return
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {str(out)!r} exists and is not a directory")
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


def config_differences(saved: RunConfig, new: RunConfig) -> list[str]:
    """Settings that differ between two configs, `rounds` aside (a run may always go further)."""
    a, b = saved.to_dict(), new.to_dict()
    return [k for k in a if k != "rounds" and a[k] != b[k]]


def check_compatible(saved: RunConfig, new: RunConfig, out: Path) -> None:
    """A resumed run may only change `rounds` (to go further); anything else changes the results."""
    a, b = saved.to_dict(), new.to_dict()
    diff = config_differences(saved, new)
    if diff:
        k = diff[0]
        raise UserError(f"--resume {str(out)!r}: the run was made with {k}={a[k]!r}, not {b[k]!r}; "
                        f"a resumed run may only change rounds (differs: {', '.join(diff)})")


def write_config(out: Path, config: RunConfig, extra: dict) -> None:
    write_json(out / "config.json", {"config": config.to_dict(), **extra})


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
               meta: dict) -> None:
    """CSVs first, then the checkpoint that marks the round complete."""
    write_csv(out / "rounds.csv", ROUND_COLUMNS, rounds)
    write_csv(out / "clients.csv", CLIENT_COLUMNS, clients)
    save_checkpoint(out, round_num, state, meta)


def summarize(rounds: list[dict], extra: dict) -> dict:
    """Final and best global test loss, the best round (where overfitting begins), totals."""
    losses = [(r["round"], r["global_test_loss"]) for r in rounds if r.get("global_test_loss") is not None]
    best_round, best = min(losses, key=lambda x: x[1]) if losses else (None, None)
    final = rounds[-1] if rounds else {}
    return {
        "rounds_completed": final.get("round", 0),
        "initial_test_loss": losses[0][1] if losses else None,
        "final_test_loss": final.get("global_test_loss"),
        "final_test_ppl": final.get("global_test_ppl"),
        "best_test_loss": best,
        "best_round": best_round,
        "final_fairness_var": final.get("fairness_var"),
        "total_bytes": final.get("bytes_cumulative", 0),
        "total_train_seconds": sum(r.get("train_seconds") or 0 for r in rounds),
        "total_eval_seconds": sum(r.get("eval_seconds") or 0 for r in rounds),
        "failed_client_updates": sum(r.get("num_failed") or 0 for r in rounds),
        **extra,
    }
