"""A sweep's cells on disk: their status, the settings check before a rerun, and the index.

`index.json` / `index.csv` at the sweep root list every cell with its settings, its status
("done", "partial", "pending", "running", "failed") and the headline numbers of its summary.
Status comes from `records.run_status`, the one "run complete" rule.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cllora import __version__, records
from cllora.errors import UserError
from cllora.partition.registry import uses_alpha
from cllora.sweep.grid import Cell, GridSpec

INDEX_COLUMNS = ("name", "status", "model", "scheme", "alpha", "seed", "rounds_completed", "rounds",
                 "initial_test_loss", "final_test_loss", "best_test_loss", "best_round",
                 "final_fairness_var", "seconds", "error", "dir")
STATUSES = ("done", "partial", "pending", "running", "failed")
SUMMARY_KEYS = ("initial_test_loss", "final_test_loss", "best_test_loss", "best_round", "final_fairness_var")


def cell_status(root: Path, cell: Cell) -> tuple[str, int]:
    """("done" | "partial" | "pending", last completed round or -1) of a cell under `root`."""
    return records.run_status(Path(root) / cell.name, cell.config.rounds)


def check_cells_compatible(cells: list[Cell], root: Path) -> None:
    """Refuse to resume or skip a cell whose directory holds a run with other settings."""
    for cell in cells:
        cell_dir = Path(root) / cell.name
        if not records.is_run_dir(cell_dir):
            continue
        saved = records.saved_config(cell_dir)
        diff = records.config_differences(saved, cell.config)
        if diff:
            k = diff[0]
            old, new = saved.to_dict(), cell.config.to_dict()
            raise UserError(f"cell {cell.name} in {str(root)!r} was run with {k}={old.get(k)!r}, not "
                            f"{new[k]!r}; use another --out, or delete that cell's directory to rerun it")


def index_entry(cell: Cell, root: Path, status: str | None = None, *, seconds: float | None = None,
                error: str | None = None) -> dict:
    """One cell's line of index.json: settings, status and headline numbers from its summary."""
    disk_status, last = cell_status(root, cell)
    summary = records.read_json(Path(root) / cell.name / "summary.json") or {}
    cfg = cell.config
    return {
        "name": cell.name, "dir": cell.name, "status": status or disk_status,
        "model": cfg.model, "scheme": cfg.scheme, "alpha": cfg.alpha if uses_alpha(cfg.scheme) else None,
        "seed": cfg.seed, "rounds": cfg.rounds,
        "rounds_completed": max(last, 0),
        **{k: summary.get(k) for k in SUMMARY_KEYS},
        "seconds": None if seconds is None else round(seconds, 1), "error": error,
        "axes": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cell.axes.items()},
        "config": cfg.to_dict(),
    }


def write_index(root: Path, spec: GridSpec, entries: list[dict]) -> None:
    """index.json (the sweep, status counts, every cell) and index.csv (one row a cell); cells
    an earlier grid ran into the same root stay listed, first."""

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    old = records.read_json(root / "index.json") or {}
    now = dt.datetime.now().isoformat(timespec="seconds")
    head = {"name": spec.name, "description": spec.description, "source": spec.source,
            "quick": spec.quick, "budget": spec.budget, "created": old.get("sweep", {}).get("created", now), "updated": now,
            "cllora_version": __version__}
    entries = _earlier_cells(root, old, {e["name"] for e in entries}) + list(entries)
    counts = {s: sum(e["status"] == s for e in entries) for s in STATUSES}
    records.write_json(root / "index.json", {"sweep": head, "counts": counts, "cells": entries})
    records.write_csv(root / "index.csv", INDEX_COLUMNS, entries)


def _earlier_cells(root: Path, old: dict, names: set[str]) -> list[dict]:
    """Cells that an earlier run of this sweep with another grid left under `root` (more seeds
    added later with --grid seed=3,4, say): kept in the index, status re-read from disk; cells of
    that grid that never started are dropped."""
    kept = []
    for entry in old.get("cells", []):
        name = entry.get("name")
        if not name or name in names or not records.is_run_dir(root / name):
            continue
        status, last = records.run_status(root / name, entry.get("rounds"))
        kept.append({**entry, "status": status, "rounds_completed": max(last, 0)})
    return kept


def describe_cells(cells: list[Cell], root: Path) -> list[dict]:
    """What --dry-run prints: each cell with its status on disk and the settings that matter."""
    rows = []
    for i, cell in enumerate(cells, 1):
        status, last = cell_status(root, cell)
        c = cell.config
        rows.append({"#": i, "cell": cell.name,
                     "status": f"partial (round {last}/{c.rounds})" if status == "partial" and last >= 0
                     else status,
                     "engine": c.engine, "clients": f"{c.clients_per_round}/{c.clients}",
                     "rounds": c.rounds, "epochs": c.local_epochs, "examples": c.max_train_examples,
                     "max_len": c.max_length, "rank": c.rank})
    return rows


def format_table(rows: list[dict]) -> str:
    """Plain aligned text columns (pipes and logs stay readable)."""
    if not rows:
        return "(no cells)"
    cols = list(rows[0])
    text = [[str(c) for c in cols]] + [["" if r[c] is None else str(r[c]) for c in cols] for r in rows]
    widths = [max(len(row[i]) for row in text) for i in range(len(cols))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in text)
