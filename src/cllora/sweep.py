"""Sweeps: a grid of run settings expanded into cells, one run directory each, run with shared models.

A grid file (or a built-in preset) holds
  [sweep]              optional name and description
  [run]                fixed settings (any RunConfig key)
  [grid]               lists of values; the cells are their cartesian product. `scheme = "iid"`
                       ignores alpha, so iid makes one cell, not one per alpha
  [per_model.<model>]  settings for one model only (the study trains smaller models longer)
  [quick]              a patch of the same shape ([quick.run], [quick.grid], ...) applied by --quick
Precedence, lowest first: RunConfig defaults, [run], [per_model.<model>], the cell's grid values,
command-line overrides (a command-line value of a grid key replaces that axis).

Running skips finished cells, resumes interrupted ones and loads each base model once per group of
cells that share (model, device, precision). `index.json` / `index.csv` at the sweep root list the
cells, their settings and status.
"""

from __future__ import annotations

import csv
import datetime as dt
import difflib
import gc
import hashlib
import io
import itertools
import json
import os
import re
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from cllora.config import FIELD_NAMES, RunConfig, from_dict, load_toml
from cllora.errors import RunFailed, UserError

TABLES = ("sweep", "run", "grid", "per_model", "quick")
SWEEP_KEYS = ("name", "description")
# short tags of grid axes in cell names; other keys appear kebab-cased
AXIS_TAGS = {"alpha": "a", "seed": "s", "local_epochs": "e", "lr": "lr", "rank": "r",
             "clients": "n", "clients_per_round": "k", "rounds": "rounds", "batch_size": "b",
             "max_length": "len"}
INDEX_COLUMNS = ("name", "status", "model", "scheme", "alpha", "seed", "rounds_completed", "rounds",
                 "initial_test_loss", "final_test_loss", "best_test_loss", "best_round",
                 "final_fairness_var", "seconds", "error", "dir")


# ---------------------------------------------------------------- the grid file

@dataclass(frozen=True)
class GridSpec:
    """A parsed, validated grid file (after the --quick patch, if any)."""

    name: str
    description: str
    run: dict[str, Any]
    grid: dict[str, list]
    per_model: dict[str, dict[str, Any]]
    source: str
    quick: bool = False


@dataclass(frozen=True)
class Cell:
    """One run of the sweep: its directory name under the sweep root and its full config."""

    name: str
    config: RunConfig
    axes: dict[str, Any] = field(default_factory=dict)  # the grid values that define this cell


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("cllora.presets").iterdir()
                  if p.name.endswith(".toml"))


def preset_path(name: str) -> Path:
    names = preset_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(f"unknown preset {name!r}{hint}; built-in presets: {', '.join(names)}")
    return Path(str(resources.files("cllora.presets") / f"{name}.toml"))


def preset_description(name: str) -> str:
    data = load_toml(preset_path(name))
    return str(data.get("sweep", {}).get("description", "")).strip()


def load_spec(path: str | Path | None = None, preset: str | None = None,
              quick: bool = False) -> GridSpec:
    """Read a grid file or a built-in preset; with `quick`, apply its [quick] patch."""
    if (path is None) == (preset is None):
        raise UserError("give exactly one of --config GRID.toml or --preset NAME")
    path = preset_path(preset) if preset else Path(path)
    data = load_toml(path)
    where = f"preset {preset!r}" if preset else str(path)
    default_name = preset or path.stem
    return parse_spec(data, where, default_name, quick)


def parse_spec(data: dict, where: str = "grid file", default_name: str = "sweep",
               quick: bool = False) -> GridSpec:
    """Validate the tables of a grid file (a dict, as read from TOML) and build a GridSpec."""
    _check_tables(data, where)
    patch = data.get("quick")
    if quick:
        if not patch:
            raise UserError(f"{where} has no [quick] table, so --quick has nothing to change")
        _check_tables(patch, f"{where} [quick]", allow_quick=False)
        data = _apply_patch(data, patch)
    sweep = _table(data, "sweep", where)
    unknown = sorted(set(sweep) - set(SWEEP_KEYS))
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)} in [sweep]; allowed: "
                        f"{', '.join(SWEEP_KEYS)}")
    run = _table(data, "run", where)
    _check_keys(run, "[run]", where)
    grid = _table(data, "grid", where)
    _check_keys(grid, "[grid]", where)
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise UserError(f"{where}: [grid] {key} must be a non-empty list of values, e.g. "
                            f"{key} = [{_toml_value(values)}]; got {_toml_value(values)}")
    both = sorted(set(run) & set(grid))
    if both:
        raise UserError(f"{where}: {', '.join(both)} is set in both [run] and [grid]; keep it in one")
    per_model = _table(data, "per_model", where)
    for model, settings in per_model.items():
        if not isinstance(settings, dict):
            raise UserError(f"{where}: [per_model] must hold one table per model, e.g. "
                            f"[per_model.\"{model}\"]; got {model} = {_toml_value(settings)}")
        _check_keys(settings, f"[per_model.\"{model}\"]", where)
        clash = sorted(set(settings) & ({"model"} | set(grid)))
        if clash:
            raise UserError(f"{where}: [per_model.\"{model}\"] sets {', '.join(clash)}, which is a grid "
                            "axis (or the model itself); per-model settings may only set fixed keys")
    name = str(sweep.get("name", default_name)) + ("-quick" if quick else "")
    return GridSpec(name, str(sweep.get("description", "")).strip(), dict(run),
                    {k: list(v) for k, v in grid.items()},
                    {m: dict(s) for m, s in per_model.items()}, where, quick)


def _check_tables(data: dict, where: str, allow_quick: bool = True) -> None:
    allowed = TABLES if allow_quick else tuple(t for t in TABLES if t != "quick")
    unknown = [k for k in data if k not in allowed]
    if unknown:
        k = unknown[0]
        hint = _did_you_mean(k, allowed)
        if k in FIELD_NAMES:
            hint = f" (run settings go in [run], lists of values in [grid])"
        raise UserError(f"{where}: unknown table or key {k!r}{hint}; allowed tables: "
                        + ", ".join(f"[{t}]" for t in allowed))


def _table(data: dict, name: str, where: str) -> dict:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise UserError(f"{where}: {name} must be a table ([{name}]), got {_toml_value(value)}")
    return value


def _check_keys(table: dict, label: str, where: str) -> None:
    for key in table:
        if key not in FIELD_NAMES:
            raise UserError(f"{where}: {label} key {key!r} is not a run setting"
                            f"{_did_you_mean(key, FIELD_NAMES)}; allowed: {', '.join(FIELD_NAMES)}")


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _apply_patch(data: dict, patch: dict) -> dict:
    """Tables of the patch update the file's tables (per_model one model at a time)."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items() if k != "quick"}
    for table, values in patch.items():
        if table == "per_model":
            merged = {m: dict(s) for m, s in out.get("per_model", {}).items()}
            for model, settings in values.items():
                merged.setdefault(model, {}).update(settings if isinstance(settings, dict) else {})
            out["per_model"] = merged
        elif table == "grid":
            out["grid"] = {**out.get("grid", {}), **values}
            out["run"] = {k: v for k, v in out.get("run", {}).items() if k not in values}
        elif table == "run":
            out["run"] = {**out.get("run", {}), **values}
            out["grid"] = {k: v for k, v in out.get("grid", {}).items() if k not in values}
        else:
            out[table] = {**out.get(table, {}), **values}
    return out


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)


# ---------------------------------------------------------------- expanding the grid into cells

def parse_grid_flag(text: str) -> tuple[str, list]:
    """`--grid KEY=V1,V2`: values read as TOML scalars where they parse (numbers, true/false)."""
    key, sep, raw = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key or not raw.strip():
        raise UserError(f"--grid expects KEY=VALUE1,VALUE2 (e.g. --grid seed=0,1,2), got {text!r}")
    if key not in FIELD_NAMES:
        raise UserError(f"--grid {text!r}: {key!r} is not a run setting{_did_you_mean(key, FIELD_NAMES)}")
    return key, [_scalar(v.strip()) for v in raw.split(",") if v.strip()]


def _scalar(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def expand(spec: GridSpec, overrides: dict[str, Any] | None = None,
           grid_overrides: dict[str, list] | None = None) -> list[Cell]:
    """The cells of a grid, model-major, in the order the values are listed; iid ignores alpha.

    `overrides` fix keys (a grid key given here stops being an axis); `grid_overrides` replace or
    add axes. Every cell's config is validated; a bad value is named with the cell it makes.
    """
    overrides = dict(overrides or {})
    grid = {k: v for k, v in spec.grid.items() if k not in overrides}
    for key, values in (grid_overrides or {}).items():
        if not values:
            raise UserError(f"--grid {key}= needs at least one value")
        grid[key] = list(values)
        overrides.pop(key, None)
    run = {k: v for k, v in spec.run.items() if k not in grid}
    keys = list(grid)
    if "model" in keys:  # model-major: cells of one model are contiguous (one model load each)
        keys.remove("model")
        keys.insert(0, "model")
    cells: dict[str, Cell] = {}
    for values in itertools.product(*(grid[k] for k in keys)):
        axes = dict(zip(keys, values))
        model = axes.get("model", overrides.get("model", run.get("model", RunConfig.model)))
        settings = {**run, **spec.per_model.get(str(model), {}), **axes, **overrides}
        config = _make_config(settings, axes, spec.source)
        if config.scheme == "iid":
            axes.pop("alpha", None)
            config = _make_config({**settings, "alpha": run.get("alpha", RunConfig.alpha)}, axes,
                                  spec.source)
        cell = Cell("", config, axes)
        cells.setdefault(_cell_key(config), cell)
    named = _name_cells(list(cells.values()), grid)
    seen: dict[str, Cell] = {}
    for cell in named:
        if cell.name in seen:
            raise UserError(f"two different cells would share the directory {cell.name!r}; "
                            "give the models distinct names")
        seen[cell.name] = cell
    return named


def _make_config(settings: dict, axes: dict, where: str) -> RunConfig:
    try:
        return from_dict(settings)
    except (UserError, TypeError, ValueError) as exc:
        desc = ", ".join(f"{k}={v}" for k, v in axes.items()) or "the fixed settings"
        raise UserError(f"{where}: the cell with {desc} is not a valid run: {exc}") from None


def _cell_key(config: RunConfig) -> str:
    return json.dumps(config.to_dict(), sort_keys=True)


def model_slug(name: str) -> str:
    """A short directory name for a model: the last path component, safe characters only."""
    base = name.rstrip("/").rsplit("/", 1)[-1] or name
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", base).strip("._") or "model"


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "+".join(_format_value(v) for v in value)
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", str(value))


def _name_cells(cells: list[Cell], grid: dict[str, list]) -> list[Cell]:
    models = sorted({c.config.model for c in cells})
    slugs = {m: model_slug(m) for m in models}
    for m in models:  # two models with one slug (two local dirs named alike): add a short hash
        if sum(s == slugs[m] for s in slugs.values()) > 1:
            slugs[m] = f"{slugs[m]}-{hashlib.sha1(m.encode()).hexdigest()[:6]}"
    varying = [k for k in grid if k not in ("model", "scheme", "alpha", "seed") and len(grid[k]) > 1]
    out = []
    for cell in cells:
        cfg = cell.config
        parts = [cfg.scheme]
        if cfg.scheme != "iid":
            parts.append(f"a{cfg.alpha:g}")
        for key in varying:
            if key in cell.axes:
                parts.append(f"{AXIS_TAGS.get(key, key.replace('_', '-'))}{_format_value(cell.axes[key])}")
        parts.append(f"s{cfg.seed}")
        out.append(Cell(f"{slugs[cfg.model]}/{'-'.join(parts)}", cfg, cell.axes))
    return out


# ---------------------------------------------------------------- cell status on disk

def cell_status(cell_dir: Path, config: RunConfig) -> tuple[str, int]:
    """("done" | "partial" | "pending", last completed round or -1) from what is on disk."""
    from cllora import records

    summary = _read_json(cell_dir / "summary.json")
    if summary is not None and (summary.get("rounds_completed") or 0) >= config.rounds:
        return "done", int(summary["rounds_completed"])
    if records.is_run_dir(cell_dir):
        return "partial", _last_round(cell_dir)
    return "pending", -1


def _last_round(cell_dir: Path) -> int:
    from safetensors import safe_open

    path = cell_dir / "checkpoint.safetensors"
    if not path.is_file():
        return -1
    try:
        with safe_open(str(path), framework="pt") as fh:
            return int(fh.metadata()["round"])
    except Exception:  # a damaged checkpoint: the engine will say so when it resumes
        return -1


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def check_cells_compatible(cells: list[Cell], root: Path) -> None:
    """Refuse to resume or skip a cell whose directory holds a run with other settings."""
    from cllora import records

    for cell in cells:
        cell_dir = root / cell.name
        if not records.is_run_dir(cell_dir):
            continue
        saved = records.saved_config(cell_dir)
        diff = records.config_differences(saved, cell.config)
        if diff:
            k = diff[0]
            saved, new = saved.to_dict(), cell.config.to_dict()
            raise UserError(f"cell {cell.name} in {str(root)!r} was run with {k}={saved.get(k)!r}, not "
                            f"{new[k]!r}; use another --out, or delete that cell's directory to rerun it")


# ---------------------------------------------------------------- the index

def index_entry(cell: Cell, root: Path, status: str | None = None, *, seconds: float | None = None,
                error: str | None = None) -> dict:
    """One cell's line of index.json: settings, status and headline numbers from its summary."""
    disk_status, last = cell_status(root / cell.name, cell.config)
    summary = _read_json(root / cell.name / "summary.json") or {}
    cfg = cell.config
    return {
        "name": cell.name, "dir": cell.name, "status": status or disk_status,
        "model": cfg.model, "scheme": cfg.scheme, "alpha": None if cfg.scheme == "iid" else cfg.alpha,
        "seed": cfg.seed, "rounds": cfg.rounds,
        "rounds_completed": max(last, 0) if disk_status != "pending" else 0,
        "initial_test_loss": summary.get("initial_test_loss"),
        "final_test_loss": summary.get("final_test_loss"),
        "best_test_loss": summary.get("best_test_loss"), "best_round": summary.get("best_round"),
        "final_fairness_var": summary.get("final_fairness_var"),
        "seconds": None if seconds is None else round(seconds, 1), "error": error,
        "axes": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cell.axes.items()},
        "config": cfg.to_dict(),
    }


def write_index(root: Path, spec: GridSpec, entries: list[dict]) -> None:
    from cllora import __version__, records

    root.mkdir(parents=True, exist_ok=True)
    old = _read_json(root / "index.json") or {}
    now = dt.datetime.now().isoformat(timespec="seconds")
    head = {"name": spec.name, "description": spec.description, "source": spec.source,
            "quick": spec.quick, "created": old.get("sweep", {}).get("created", now), "updated": now,
            "cllora_version": __version__}
    counts = {s: sum(e["status"] == s for e in entries) for s in ("done", "partial", "pending",
                                                                   "running", "failed")}
    records.write_json(root / "index.json", {"sweep": head, "counts": counts, "cells": entries})
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(INDEX_COLUMNS)
    for e in entries:
        writer.writerow(["" if e.get(c) is None else (f"{e[c]:g}" if isinstance(e[c], float) else e[c])
                         for c in INDEX_COLUMNS])
    records.atomic_write_text(root / "index.csv", buf.getvalue())


# ---------------------------------------------------------------- running

@dataclass
class SweepOutcome:
    entries: list[dict]
    ran: int = 0
    skipped: int = 0
    failed: int = 0
    model_loads: int = 0
    seconds: float = 0.0


def _group_key(config: RunConfig) -> tuple[str, str, str]:
    from cllora.model import resolve_device, resolve_precision

    device = resolve_device(config.device)
    return config.model, str(device), resolve_precision(config.precision, device)


def run_sweep(spec: GridSpec, cells: list[Cell], root: Path, *, progress: bool = True,
              console=None, log: Callable[[str], None] | None = None) -> SweepOutcome:
    """Run every unfinished cell into root/<cell name>; one base-model load per (model, device,
    precision) group; the index is rewritten after every cell. Cell failures are recorded and the
    sweep goes on; RunFailed is raised at the end if any cell failed."""
    from cllora import model as model_mod
    from cllora.progress import RunProgress
    from cllora.engine import run_experiment

    root = Path(root)
    check_cells_compatible(cells, root)
    entries = {c.name: index_entry(c, root) for c in cells}
    write_index(root, spec, list(entries.values()))
    say = log or (lambda m: None)
    todo = [c for c in cells if entries[c.name]["status"] != "done"]
    outcome = SweepOutcome([], skipped=len(cells) - len(todo))
    resumed = sum(entries[c.name]["status"] == "partial" for c in todo)
    say(f"sweep {spec.name}: {len(cells)} cells ({outcome.skipped} done, {resumed} to resume, "
        f"{len(todo) - resumed} to run) in {root}")
    start = time.perf_counter()
    durations: list[float] = []
    position = {c.name: i + 1 for i, c in enumerate(cells)}
    groups: dict[tuple, list[Cell]] = {}
    for cell in todo:
        groups.setdefault(_group_key(cell.config), []).append(cell)
    try:
        for (name, device, precision), group in groups.items():
            tokenizer = base = None
            for cell in group:
                label = f"[{position[cell.name]}/{len(cells)}] {cell.name} "
                if base is None:
                    try:
                        say(f"loading {name} ({precision}, {device}) for {len(group)} cell(s)")
                        tokenizer = model_mod.load_tokenizer(name, log=say)
                        base = model_mod.load_model(name, device, precision, log=say)
                        outcome.model_loads += 1
                    except Exception as exc:  # e.g. weights package not installed: fail the group
                        if os.environ.get("CLLORA_DEBUG"):
                            raise
                        for other in group:
                            entries[other.name] = index_entry(other, root, "failed", error=_one_line(exc))
                            outcome.failed += 1
                        write_index(root, spec, list(entries.values()))
                        say(f"cannot load {name}: {_one_line(exc)}; skipping its {len(group)} cell(s)")
                        break
                cell_dir = root / cell.name
                resume = entries[cell.name]["status"] == "partial"
                entries[cell.name] = index_entry(cell, root, "running")
                write_index(root, spec, list(entries.values()))
                cell_start = time.perf_counter()
                cell_log = _cell_logger(cell_dir, say)
                try:
                    run_experiment(cell.config, cell_dir, resume=resume, base_model=base,
                                   tokenizer=tokenizer, log=cell_log,
                                   progress=RunProgress(enabled=progress, console=console, label=label))
                except KeyboardInterrupt:
                    entries[cell.name] = index_entry(cell, root)
                    raise
                except Exception as exc:
                    if os.environ.get("CLLORA_DEBUG"):
                        raise
                    seconds = time.perf_counter() - cell_start
                    entries[cell.name] = index_entry(cell, root, "failed", seconds=seconds,
                                                     error=_one_line(exc))
                    outcome.failed += 1
                    cell_log(f"failed: {_one_line(exc)}")
                    say(f"{label}failed after {_duration(seconds)}: {_one_line(exc)}")
                    if _has_lora(base):  # a failure between attaching and removing LoRA: reload
                        base = None
                    continue
                finally:
                    write_index(root, spec, list(entries.values()))
                seconds = time.perf_counter() - cell_start
                durations.append(seconds)
                outcome.ran += 1
                entries[cell.name] = index_entry(cell, root, seconds=seconds)
                write_index(root, spec, list(entries.values()))
                left = len(todo) - outcome.ran - outcome.failed
                eta = f"; about {_duration(left * sum(durations) / len(durations))} left" if left else ""
                e = entries[cell.name]
                say(f"{label}done in {_duration(seconds)}: test loss {e['initial_test_loss']:.4f} → "
                    f"{e['final_test_loss']:.4f} (best {e['best_test_loss']:.4f} at round "
                    f"{e['best_round']}){eta}")
            del base, tokenizer
            gc.collect()
    finally:
        outcome.seconds = time.perf_counter() - start
        outcome.entries = [entries[c.name] for c in cells]
        write_index(root, spec, outcome.entries)
    if outcome.failed:
        first = next(e for e in outcome.entries if e["status"] == "failed")
        raise RunFailed(f"{outcome.failed} of {len(cells)} cells failed (first: {first['name']}: "
                        f"{first['error']}); the others are in {root}, and a rerun retries the failed ones")
    return outcome


def _has_lora(model) -> bool:
    return model is not None and any("lora_" in n for n, _ in model.named_parameters())


def _cell_logger(cell_dir: Path, echo: Callable[[str], None]) -> Callable[[str], None]:
    """Log lines of a cell go to <cell>/run.log (appended, so a resumed cell keeps its history)."""
    def log(message: str) -> None:
        cell_dir.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now().isoformat(timespec="seconds")
        with open(cell_dir / "run.log", "a", encoding="utf-8") as fh:
            fh.write(f"{stamp} {message}\n")
        if message.startswith("warning"):
            echo(f"{cell_dir.parent.name}/{cell_dir.name}: {message}")
    return log


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def _duration(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def describe_cells(cells: list[Cell], root: Path) -> list[dict]:
    """What --dry-run prints: each cell with its status on disk and the settings that matter."""
    rows = []
    for i, cell in enumerate(cells, 1):
        status, last = cell_status(root / cell.name, cell.config)
        c = cell.config
        rows.append({"#": i, "cell": cell.name,
                     "status": f"partial (round {last}/{c.rounds})" if status == "partial" and last >= 0
                     else status,
                     "clients": f"{c.clients_per_round}/{c.clients}", "rounds": c.rounds,
                     "epochs": c.local_epochs, "examples": c.max_train_examples,
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

