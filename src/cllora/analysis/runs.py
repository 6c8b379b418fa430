"""Run records on disk: find the run directories at or under a folder and read each one's files.

A run directory holds config.json and rounds.csv (written by cllora.records); clients.csv,
partition.json, summary.json, test_losses.npz (per-text losses of the global test set) and
split_losses.npz (per-text losses on the clients' splits) are read when present. Nothing here imports torch or model code.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from cllora import records
from cllora.analysis.plans import Sweep, find_sweep
from cllora.errors import UserError


@dataclass
class RunRecord:
    """One run directory as read from disk."""

    name: str  # path relative to the report root ("." for a single run)
    path: Path
    config: dict
    meta: dict  # every top-level key of config.json but "config": precision, device, adapter_bytes, ...
    rounds: list[dict]
    clients: list[dict]
    partition: dict | None
    summary: dict | None
    test_losses: dict | None = None  # test_losses.npz as {name: array}; None for older runs
    split_losses: dict | None = None  # split_losses.npz as {name: array}; None for older runs
    sweep: Sweep | None = None  # its sweep folder's name, budget and plan; None for a single run

    @property
    def planned(self) -> bool:
        """Its seed is one its sweep's plan lists (True without a plan: then nothing was planned,
        and the report says so)."""
        plan = self.sweep.plan if self.sweep else None
        return plan is None or int(self.config.get("seed", 0)) in plan.seeds

    @property
    def complete(self) -> bool:
        """Finished: its summary.json says it reached the planned rounds."""
        done = (self.summary or {}).get("rounds_completed") or 0
        return self.summary is not None and done >= self.config["rounds"]


def find_run_dirs(root: Path) -> list[Path]:
    """The run directories at or under `root` (a run has config.json and rounds.csv), in natural
    order (a2 before a10)."""
    root = Path(root)
    if (root / "config.json").is_file():
        return [root]
    found = [p.parent for p in root.rglob("config.json")
             if (p.parent / "rounds.csv").is_file() and "figures" not in p.parent.relative_to(root).parts]
    return sorted(found, key=lambda p: _natural_key(str(p.relative_to(root))))


def _natural_key(text: str) -> list:
    return [float(t) if re.fullmatch(r"\d+(\.\d+)?", t) else t
            for t in re.split(r"(\d+(?:\.\d+)?)", text)]


PER_TEXT = ("text_index", "tokens", "length_class", "loss_r0", "loss_final", "loss_best")
NEEDED = ("text_index", "tokens", "loss_final")  # what the report's comparisons use


def read_test_losses(path: Path, log: Callable[[str], None] = print) -> dict | None:
    """test_losses.npz (records.TEST_LOSSES, written by cllora.engine.evaluation) as {name: array}: per
    global test text its index, scored tokens, length class and token-mean loss before training,
    at the final and at the best round. None when the run has none (recorded before them) or it
    is unreadable (said in the log)."""
    data, file = _npz(path, records.TEST_LOSSES, log, "its per-text losses are not used")
    if data is None:
        return None
    missing = [k for k in NEEDED if k not in data]
    sizes = {np.shape(data[k]) for k in PER_TEXT if k in data}
    if missing or len(sizes) != 1:
        log(f"{file}: " + (f"lacks {', '.join(missing)}" if missing else "arrays of unequal length")
            + "; its per-text losses are not used")
        return None
    return data


TEXT_COLUMNS = ("error",)  # columns whose values are text (clients.csv: why a client failed)


def checked_rows(file: Path, rows: list[dict], log: Callable[[str], None]) -> list[dict]:
    """The rows of a rounds.csv or clients.csv with every value the report cannot use named in the
    log by file, line and column: a row whose round is not a whole number >= 0 is left out; text
    where a number belongs becomes empty; NaN and inf stay (a diverged round is an outcome) but are
    said, the last round's above all, so the report's final loss is never an earlier round's in silence."""
    kept = []
    for line, row in enumerate(rows, start=2):
        rnd = row.get("round")
        if not isinstance(rnd, int) or rnd < 0:
            log(f"{file}: line {line}: round = {rnd!r} is not a round number (a whole number >= 0); "
                "row left out")
            continue
        for key, value in row.items():
            if isinstance(value, str) and key not in TEXT_COLUMNS:
                log(f"{file}: line {line} (round {rnd}): {key} = {value!r} is not a number; read as empty")
                row[key] = None
            elif isinstance(value, float) and not math.isfinite(value):
                log(f"{file}: line {line} (round {rnd}): {key} is {value!r}")
        kept.append(row)
    if not kept:
        log(f"{file}: no rounds (empty or only a header)")
    else:
        last = kept[-1]
        loss = last.get("global_test_loss")
        if isinstance(loss, float) and not math.isfinite(loss):
            log(f"warning: {file}: the last round ({last['round']}) has global_test_loss {loss!r}; the report's "
                f"final loss is {loss!r} (not finite), not an earlier round's")
    return kept


def _config_of(path: Path) -> tuple[dict, dict]:
    """(settings, the rest) of a run's config.json, with a ValueError naming the file and the key
    where its shape is not cllora's."""
    file = path / "config.json"
    raw = records.read_json(file)
    if not isinstance(raw, dict):
        raise ValueError(f"{file} is missing or not valid JSON")
    config = raw.get("config")
    if not isinstance(config, dict):
        raise ValueError(f"{file}: 'config' must be an object of settings, got {type(config).__name__}")
    for key in ("model", "scheme"):
        if not isinstance(config.get(key), str):
            raise ValueError(f"{file}: config.{key} must be text, got {config.get(key)!r}")
    rounds = config.get("rounds")
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
        raise ValueError(f"{file}: config.rounds must be a whole number >= 1, got {rounds!r}")
    return config, {k: v for k, v in raw.items() if k != "config"}


def read_split_losses(path: Path, log: Callable[[str], None] = print) -> dict | None:
    """split_losses.npz (records.SPLIT_LOSSES, written by cllora.engine.evaluation): per round the
    owner, tokens and token-mean loss of every client-split text under the global model. None when
    the run has none or it is unreadable (said in the log)."""
    return _npz(path, records.SPLIT_LOSSES, log, "the fairness shown is rounds.csv's")[0]


def _npz(path: Path, name: str, log: Callable[[str], None], unused: str) -> tuple[dict | None, Path]:
    """(the arrays of run file `name`, its path); None when the run has none or it is unreadable,
    which is logged with what that leaves out (`unused`)."""
    file = path / name
    data = records.read_npz(file) if file.is_file() else None
    if data is None and file.is_file():
        log(f"{file}: unreadable, {unused}")
    return data, file


def load_run(path: Path, root: Path, log: Callable[[str], None] = print,
             sweeps: dict | None = None) -> RunRecord:
    """Read one run directory; `root` names it (its path relative to the report's folder) and bounds
    the search for its sweep folder (plans.find_sweep; `sweeps` caches the folders read)."""
    config, meta = _config_of(path)
    clients_csv = path / "clients.csv"
    rounds = checked_rows(path / "rounds.csv", records.read_csv(path / "rounds.csv", log), log)
    clients = records.read_csv(clients_csv, log) if clients_csv.is_file() else []
    return RunRecord(
        name=path.relative_to(root).as_posix() if path != root else ".", path=path,
        config=config, meta=meta, rounds=rounds,
        clients=checked_rows(clients_csv, clients, log) if clients else [],
        partition=records.read_json(path / "partition.json"),
        summary=records.read_json(path / "summary.json"), test_losses=read_test_losses(path, log),
        sweep=find_sweep(path, root, sweeps), split_losses=read_split_losses(path, log))


def load_runs(root: Path, log: Callable[[str], None] = print) -> list[RunRecord]:
    """Every readable run at or under `root`; an unreadable one is logged and skipped."""
    if not root.is_dir():
        raise UserError(f"{str(root)!r} is not a directory")
    dirs = find_run_dirs(root)
    if not dirs:
        raise UserError(f"{str(root)!r} holds no cllora runs (no run directory with config.json and "
                        "rounds.csv at or under it)")
    runs, reasons, sweeps = [], [], {}
    for d in dirs:
        try:
            runs.append(load_run(d, root, log, sweeps))
        except UserError:
            raise  # a bad plan.toml: its sweep's verdicts would silently change, so stop here
        except (OSError, KeyError, TypeError, ValueError) as exc:
            reasons.append(f"{exc}")
            log(f"skipping {d}: unreadable run ({exc})")
    if not runs:
        raise UserError(f"no readable run under {str(root)!r}: {reasons[0]}"
                        + (f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""))
    return runs


def hardware_summary(runs: list[RunRecord]) -> str:
    """What the runs computed on (config.json, cllora.device.describe); '—' for runs older than the
    record, and each CPU fallback of device auto with its reason."""
    def one(m: dict) -> str:
        if "device_name" not in m:
            return "— (not recorded)"
        return (f"{m['device_name']}; torch {m.get('torch_version')}, CUDA {m.get('cuda_version') or 'none'}; "
                f"TF32 {'on' if m.get('tf32') else 'off'}, {'deterministic CUDA kernels' if m.get('deterministic') else 'CPU kernels'}")
    seen = list(dict.fromkeys(one(r.meta) for r in runs))
    falls = sorted({r.meta["device_fallback"] for r in runs if r.meta.get("device_fallback")})
    return " | ".join(seen + [f"device auto fell back to the CPU: {f}" for f in falls])
