"""A run directory's records: the round/client column schema beside the functions that fill it,
and every write of the run directory (config, partition, CSVs, checkpoint, summary), made with
the atomic writers of `cllora.files` (re-exported here, so a run's writer is one module).

Every file is written atomically (temporary file, then rename), so a run killed at any moment
never leaves a half-written CSV or checkpoint. The checkpoint (global adapter, the strategy's
server and client states as packed by cllora.aggregate.run_state, and the last completed round in
its metadata) is written after the CSVs; on resume, CSV rows past it are dropped.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cllora.aggregate.drift import DRIFT_COLUMNS
from cllora.aggregate.error import ERROR_COLUMNS
from cllora.config import RunConfig, from_dict
from cllora.errors import UserError
from cllora.files import (atomic_write_bytes, atomic_write_text, read_csv, read_json,  # noqa: F401
                          read_npz, save_figure, write_csv, write_json, write_npz)  # (the run's writer)
from cllora.metrics import excess_variance, fairness, fairness_noise, perplexity
from cllora.privacy.clip import DP_COLUMNS, clip_columns

if TYPE_CHECKING:  # the checkpoint functions import torch lazily: reading records needs no torch
    import torch

ROUND_COLUMNS = (
    "round", "global_test_loss", "global_test_ppl",
    "fairness_var", "fairness_std", "fairness_min", "fairness_max", "fairness_worst10", "fairness_mean",
    "fairness_var_corrected", "fairness_se_mean", "fairness_jain", "fairness_gini",
    "local_models_test_loss_mean", "local_models_var", "local_models_var_corrected",
    "local_models_global_test_loss_mean",
    "num_participants", "num_failed", "train_loss_mean", *DRIFT_COLUMNS, *ERROR_COLUMNS,
    *DP_COLUMNS,  # client-level DP (cllora.private_round): empty without DP
    "bytes_up", "bytes_down", "bytes_cumulative",
    "train_seconds", "eval_seconds", "overhead_seconds", "round_seconds",
)
CLIENT_COLUMNS = (
    "round", "client_id", "rank", "participated", "failed", "num_train_examples", "train_loss", "train_seconds",
    "local_model_test_loss", "local_model_test_se", "local_model_global_test_loss",
    "global_model_local_test_loss",
    "global_model_local_test_se", "local_test_texts", "error",
)


def class_columns(num_classes: int) -> tuple[str, ...]:
    """The global model's test loss per length class: test_loss_c0 .. test_loss_c{K-1}."""
    return tuple(f"test_loss_c{c}" for c in range(num_classes))


def round_columns(num_classes: int) -> tuple[str, ...]:
    """rounds.csv's columns for a run of `num_classes` length classes (the class losses after
    global_test_ppl, DP's clip statistics by class at the end)."""
    at = ROUND_COLUMNS.index("global_test_ppl") + 1
    return ROUND_COLUMNS[:at] + class_columns(num_classes) + ROUND_COLUMNS[at:] + clip_columns(num_classes)


@dataclass
class RoundScores:
    """A round's evaluations: the global model on the global test set and on every client's split,
    and each participating client's local model: {client: (global test loss, own split loss)}.
    `client_losses` (and their standard errors) are None where the all-client pass did not run;
    `class_losses` are the global test loss per length class; `test_texts` the per-text losses
    (cllora.evaluation.TestTexts) behind test_losses.npz."""

    test_loss: float
    client_losses: np.ndarray | None
    local: dict[int, tuple[float | None, float | None]] = field(default_factory=dict)
    local_se: dict[int, float | None] = field(default_factory=dict)  # of each local model's own-split loss
    client_se: np.ndarray | None = None
    client_texts: np.ndarray | None = None  # texts in each client's local test split
    class_losses: list[float] = field(default_factory=list)
    test_texts: Any = None


def round_row(round_num: int, scores: RoundScores | None, updates: list, bytes_up: int, bytes_down: int,
              bytes_cumulative: int, train_s: float, eval_s: float, overhead_s: float,
              drift: dict | None = None, agg_error: dict | None = None) -> dict:
    """One rounds.csv row; `scores` is None in a round that was not evaluated (empty columns);
    `drift` holds the clients' drift (cllora.aggregate.drift) and `agg_error` the aggregation
    error of their adapters (cllora.aggregate.error), both None in round 0."""
    good = [u for u in updates if not u.failed]
    train_losses = [u.result.train_loss for u in good]
    return {
        "round": round_num, **_evaluation_columns(scores),
        "num_participants": len(updates), "num_failed": len(updates) - len(good),
        "train_loss_mean": float(np.mean(train_losses)) if train_losses else None, **(drift or {}),
        **(agg_error or {}),
        "bytes_up": bytes_up, "bytes_down": bytes_down,
        "bytes_cumulative": bytes_cumulative,
        "train_seconds": train_s, "eval_seconds": eval_s, "overhead_seconds": overhead_s,
        "round_seconds": train_s + eval_s + overhead_s,
    }


def _evaluation_columns(scores: RoundScores | None) -> dict:
    if scores is None:
        return {}
    fair = fairness(scores.client_losses) if scores.client_losses is not None \
        else dict.fromkeys(("mean", "var", "std", "min", "max", "worst10"))  # not measured: empty
    local_own = [own for _, own in scores.local.values() if own is not None]
    own_se = [scores.local_se.get(c) for c, (_, own) in scores.local.items() if own is not None]
    own_se = [np.nan if se is None else se for se in own_se]
    local_global = [glob for glob, _ in scores.local.values() if glob is not None]
    return {**_measurement_columns(scores),
        "global_test_loss": scores.test_loss, "global_test_ppl": perplexity(scores.test_loss),
        "fairness_var": fair["var"], "fairness_std": fair["std"], "fairness_min": fair["min"],
        "fairness_max": fair["max"], "fairness_worst10": fair["worst10"], "fairness_mean": fair["mean"],
        "local_models_test_loss_mean": float(np.mean(local_own)) if local_own else None,
        "local_models_var": float(np.var(local_own)) if local_own else None,
        # unbiased (not floored: may be < 0) so that means over rounds and seeds stay unbiased
        "local_models_var_corrected": excess_variance(local_own, own_se) if local_own and
        np.isfinite(own_se).all() else None,
        "local_models_global_test_loss_mean": float(np.mean(local_global)) if local_global else None,
    }


def _measurement_columns(scores: RoundScores) -> dict:
    """Loss per length class and the fairness statistics beside the variance (cllora.metrics);
    empty where the all-client pass did not run."""
    columns = {f"test_loss_c{c}": v for c, v in enumerate(scores.class_losses)}
    if scores.client_losses is None:
        return columns
    se = scores.client_se if scores.client_se is not None else np.full(len(scores.client_losses), np.nan)
    noise = fairness_noise(scores.client_losses, se)
    return {**columns, "fairness_var_corrected": noise["var_corrected"], "fairness_se_mean": noise["se_mean"],
            "fairness_jain": noise["jain"], "fairness_gini": noise["gini"]}


def _client_measurement(scores: RoundScores | None, cid: int) -> dict:
    """A client's row: the global model's loss on its split, that loss's standard error, its size."""
    if scores is None:
        return {}
    out = {"local_test_texts": None if scores.client_texts is None else int(scores.client_texts[cid])}
    if scores.client_losses is not None:
        out["global_model_local_test_loss"] = float(scores.client_losses[cid])
        if scores.client_se is not None:
            out["global_model_local_test_se"] = float(scores.client_se[cid])
    return out


def client_rows(round_num: int, num_clients: int, updates: list, scores: RoundScores | None,
                ranks: list[int]) -> list[dict]:
    """One clients.csv row per client per round: participation, failure and its reason, training;
    the evaluation columns only in an evaluated round."""
    by_id = {u.client_id: u for u in updates}
    local = scores.local if scores is not None else {}
    local_se = scores.local_se if scores is not None else {}
    rows = []
    for cid in range(num_clients):
        u = by_id.get(cid)
        global_test, own_test = local.get(cid, (None, None))
        rows.append({
            "round": round_num, "client_id": cid, "rank": ranks[cid], "participated": int(u is not None),
            "failed": int(u is not None and u.failed),
            "num_train_examples": None if u is None else u.num_train_examples,
            "train_loss": None if u is None else u.result.train_loss,
            "train_seconds": None if u is None else u.result.seconds,
            "local_model_test_loss": own_test, "local_model_global_test_loss": global_test,
            "local_model_test_se": local_se.get(cid),
            **_client_measurement(scores, cid),
            "error": None if u is None else u.error,
        })
    return rows


TIMING_COLUMNS = ("train_seconds", "eval_seconds", "overhead_seconds", "round_seconds")
RUN_FILES = ("config.json", "partition.json", "rounds.csv", "clients.csv", "summary.json", "report.html",
             "claims.json", "checkpoint.safetensors", "global_loss.png", "client_loss.png", "partition.png",
             "fairness.png", "test_losses.npz")
RUN_DIRS = ("adapter", "tensorboard", "mlruns")  # the trackers' local stores (cllora.tracking)
TEST_LOSSES = "test_losses.npz"  # per-text global test losses (format: cllora.evaluation.save_test_losses)


# ---------------------------------------------------------------- the run directory

def is_run_dir(path: Path) -> bool:
    return (path / "config.json").is_file()


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


RESUME_MAY_CHANGE = ("rounds", "precision", "device", "log_to")  # a run may go further; see
# check_resume_runtime for precision/device; a tracker changes no result


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


def write_config(out: Path, config: RunConfig, extra: dict, *, resume: bool = False) -> None:
    """config.json: the resolved config and what it resolved to. A resume keeps what the run was
    started with (its precision and device among them), updates `rounds`, and appends what this
    session resolved to under "resumes"."""
    if not resume:
        write_json(out / "config.json", {"config": config.to_dict(), **extra})
        return
    recorded = read_json(out / "config.json") or {"config": config.to_dict(), **extra}
    recorded["config"]["rounds"] = config.rounds
    session = {"precision": extra.get("precision"), "device": extra.get("device"),
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
