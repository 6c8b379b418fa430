"""Running a sweep: a grid file or built-in preset read from disk, then its cells run one by one.

The grid itself (tables, expansion, cell names) is `cllora.sweep.grid`; the cells' status and the
index at the sweep root are `cllora.sweep.index`. Running skips finished cells, resumes
interrupted ones, and runs each cell on its config's engine: in-process cells share one base
model per (model, device, precision) group; "flower-sim" cells go through Flower's simulation
engine, which loads its own models. A failed cell is recorded and the sweep goes on.
"""

from __future__ import annotations

import datetime as dt
import difflib
import gc
import os
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable

from cllora.config.load import load_toml
from cllora.config.settings import RunConfig
from cllora.engine.runtime import build_runtime, resolve
from cllora.errors import RunFailed, UserError, brief
from cllora.sweep.grid import Cell, GridSpec, parse_spec
from cllora.sweep.index import check_cells_compatible, index_entry, write_index

Log = Callable[[str], None]


# ---------------------------------------------------------------- grid files and presets

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
              quick: bool = False, budget: str | None = None) -> GridSpec:
    """Read a grid file or a built-in preset at a training budget (grid.BUDGETS; `quick` is
    budget "quick"): "full" as written, else with its patch table of that name applied."""
    if (path is None) == (preset is None):
        raise UserError("give exactly one of --config GRID.toml or --preset NAME")
    path = preset_path(preset) if preset else Path(path)
    where = f"preset {preset!r}" if preset else str(path)
    return parse_spec(load_toml(path), where, preset or path.stem, quick, budget)


# ---------------------------------------------------------------- running

@dataclass
class SweepOutcome:
    entries: list[dict]
    ran: int = 0
    skipped: int = 0
    failed: int = 0
    model_loads: int = 0
    seconds: float = 0.0


@dataclass
class _Sweep:
    """One sweep while it runs: the index entry of every cell (rewritten on each change) and the
    outcome so far."""

    spec: GridSpec
    cells: list[Cell]
    root: Path
    say: Log
    progress: bool = True
    console: object = None
    entries: dict[str, dict] = field(default_factory=dict)
    outcome: SweepOutcome = field(default_factory=lambda: SweepOutcome([]))
    durations: list[float] = field(default_factory=list)

    def record(self, cell: Cell, status: str | None = None, **kwargs) -> None:
        self.entries[cell.name] = index_entry(cell, self.root, status, **kwargs)
        write_index(self.root, self.spec, list(self.entries.values()))

    def label(self, cell: Cell) -> str:
        return f"[{self.cells.index(cell) + 1}/{len(self.cells)}] {cell.name} "

    def left(self) -> int:
        return sum(e["status"] in ("partial", "pending") for e in self.entries.values())


def run_sweep(spec: GridSpec, cells: list[Cell], root: Path, *, progress: bool = True,
              console=None, log: Log | None = None) -> SweepOutcome:
    """Run every unfinished cell into root/<cell name> on its engine; one base-model load per
    (model, device, precision) group of in-process cells; the index is rewritten after every
    cell. Cell failures are recorded and the sweep goes on; RunFailed is raised at the end if any
    cell failed."""
    root = Path(root)
    check_cells_compatible(cells, root)
    sweep = _Sweep(spec, cells, root, log or (lambda m: None), progress, console,
                   {c.name: index_entry(c, root) for c in cells})
    todo = [c for c in cells if sweep.entries[c.name]["status"] != "done"]
    _check_engines(todo)  # before anything is written
    _announce(sweep, todo)
    start = time.perf_counter()
    try:
        for group in _groups(todo).values():
            _run_group(sweep, group)
            gc.collect()  # the group's base model
    finally:
        sweep.outcome.seconds = time.perf_counter() - start
        sweep.outcome.entries = [sweep.entries[c.name] for c in cells]
        write_index(root, spec, sweep.outcome.entries)
    _raise_if_failed(sweep.outcome, root)
    return sweep.outcome


def _check_engines(todo: list[Cell]) -> None:
    """Every engine the cells name must be installed: say so before the sweep starts."""
    from cllora.runner import engine_runner  # lazy: torch (a dry run never loads it)

    for engine in sorted({c.config.engine for c in todo}):
        try:
            engine_runner(engine)
        except UserError as exc:
            first = next(c for c in todo if c.config.engine == engine)
            raise UserError(f"cell {first.name}: {exc}") from None


def _announce(sweep: _Sweep, todo: list[Cell]) -> None:
    write_index(sweep.root, sweep.spec, list(sweep.entries.values()))
    sweep.outcome.skipped = len(sweep.cells) - len(todo)
    resumed = sum(sweep.entries[c.name]["status"] == "partial" for c in todo)
    sweep.say(f"sweep {sweep.spec.name}: {len(sweep.cells)} cells ({sweep.outcome.skipped} done, "
              f"{resumed} to resume, {len(todo) - resumed} to run) in {sweep.root}")


def _groups(todo: list[Cell]) -> dict[tuple, list[Cell]]:
    """Cells that can share one base model: same engine, model, resolved device and precision."""

    groups: dict[tuple, list[Cell]] = {}
    for cell in todo:
        device, precision = resolve(cell.config)
        key = (cell.config.engine, cell.config.model, str(device), precision)
        groups.setdefault(key, []).append(cell)
    return groups


def _run_group(sweep: _Sweep, group: list[Cell]) -> None:
    """Flower cells one by one; in-process cells on one shared runtime, reloaded only after a
    failure left LoRA layers on the base model."""
    if group[0].config.engine == "flower-sim":
        for cell in group:
            _run_cell(sweep, cell, _run_flower)
        return
    runtime = None
    for i, cell in enumerate(group):
        if runtime is None:
            runtime = _load_runtime(sweep, group[i:])
            if runtime is None:
                return
        _run_cell(sweep, cell, _in_process(runtime))
        if _has_lora(runtime.model):
            runtime = None


def _load_runtime(sweep: _Sweep, cells: list[Cell]):
    """The tokenizer and base model for `cells`; if they cannot be loaded, every one of those
    cells is recorded as failed and None is returned."""

    config = cells[0].config
    device, precision = resolve(config)
    sweep.say(f"loading {config.model} ({precision}, {device}) for {len(cells)} cell(s)")
    try:
        runtime = build_runtime(config, log=sweep.say)
    except Exception as exc:  # e.g. a weights package not installed: fail these cells, go on
        if os.environ.get("CLLORA_DEBUG"):
            raise
        for cell in cells:
            sweep.record(cell, "failed", error=brief(exc))
            sweep.outcome.failed += 1
        sweep.say(f"cannot load {config.model}: {brief(exc)}; skipping its {len(cells)} cell(s)")
        return None
    sweep.outcome.model_loads += 1
    return runtime


def _in_process(runtime) -> Callable:
    def run(config: RunConfig, out: Path, **kwargs) -> dict:
        from cllora import runner  # lazy: torch

        return runner.run(config, out, base_model=runtime.model, tokenizer=runtime.tokenizer, **kwargs)
    return run


def _run_flower(config: RunConfig, out: Path, **kwargs) -> dict:
    from cllora import runner  # lazy: torch

    return runner.run(config, out, **kwargs)


def _run_cell(sweep: _Sweep, cell: Cell, run: Callable) -> None:
    """Run (or resume) one cell with `run(config, out, resume=, overwrite=, progress=, log=)`."""
    from cllora.engine.progress import RunProgress  # lazy: rich

    cell_dir = sweep.root / cell.name
    resume = sweep.entries[cell.name]["status"] == "partial"
    sweep.record(cell, "running")
    cell_log = _cell_logger(cell_dir, sweep.say)
    progress = RunProgress(enabled=sweep.progress, console=sweep.console, label=sweep.label(cell))
    start = time.perf_counter()
    try:
        run(cell.config, cell_dir, resume=resume, overwrite=False, progress=progress, log=cell_log)
    except KeyboardInterrupt:
        sweep.entries[cell.name] = index_entry(cell, sweep.root)  # as far as it got
        raise
    except Exception as exc:
        if os.environ.get("CLLORA_DEBUG"):
            raise
        _cell_failed(sweep, cell, exc, time.perf_counter() - start, cell_log)
        return
    _cell_done(sweep, cell, time.perf_counter() - start)


def _cell_failed(sweep: _Sweep, cell: Cell, exc: Exception, seconds: float, cell_log: Log) -> None:
    sweep.record(cell, "failed", seconds=seconds, error=brief(exc))
    sweep.outcome.failed += 1
    cell_log(f"failed: {brief(exc)}")
    sweep.say(f"{sweep.label(cell)}failed after {duration(seconds)}: {brief(exc)}")


def _cell_done(sweep: _Sweep, cell: Cell, seconds: float) -> None:
    sweep.record(cell, seconds=seconds)
    sweep.durations.append(seconds)
    sweep.outcome.ran += 1
    left = sweep.left()
    eta = f"; about {duration(left * sum(sweep.durations) / len(sweep.durations))} left" if left else ""
    e = sweep.entries[cell.name]
    sweep.say(f"{sweep.label(cell)}done in {duration(seconds)}: test loss {_f(e['initial_test_loss'])} → "
              f"{_f(e['final_test_loss'])} (best {_f(e['best_test_loss'])} at round {e['best_round']}){eta}")


def _raise_if_failed(outcome: SweepOutcome, root: Path) -> None:
    if outcome.failed:
        first = next(e for e in outcome.entries if e["status"] == "failed")
        raise RunFailed(f"{outcome.failed} of {len(outcome.entries)} cells failed (first: {first['name']}: "
                        f"{first['error']}); the others are in {root}, and a rerun retries the failed ones")


def _has_lora(model) -> bool:
    from cllora.model import is_lora_name  # lazy: torch, transformers

    return model is not None and any(is_lora_name(n) for n, _ in model.named_parameters())


def _cell_logger(cell_dir: Path, echo: Log) -> Log:
    """Log lines of a cell go to <cell>/run.log (appended, so a resumed cell keeps its history)."""
    def log(message: str) -> None:
        cell_dir.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now().isoformat(timespec="seconds")
        with open(cell_dir / "run.log", "a", encoding="utf-8") as fh:
            fh.write(f"{stamp} {message}\n")
        if message.startswith("warning"):
            echo(f"{cell_dir.parent.name}/{cell_dir.name}: {message}")
    return log



def _f(value) -> str:
    return "?" if value is None else f"{value:.4f}"


def duration(seconds: float) -> str:
    """A short human duration: 42s, 3m05s, 1h02m."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"

