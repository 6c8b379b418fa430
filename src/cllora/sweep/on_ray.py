"""Running a sweep's cells in parallel on Ray (`cllora sweep --ray [ADDRESS]`).

The sweep is the sequential one's (`cllora.sweep.run`): the same run directories, index, skip-finished
and resume rules and failure records; only where a cell runs differs. Each cell runs in a Ray
actor (`cllora.sweep.worker.CellWorker`) that declares `--cell-cpus` and `--cell-gpus`; there are as
many actors as cells fit on the cluster at once. An actor keeps the base model it loaded, and a
free actor takes the next cell of the model it holds before any other (else a model that fewest
actors hold), so cells sharing a model reuse it as in the sequential sweep. The driver alone
writes the index, reading each cell's results from the sweep folder, which on a cluster must be a
filesystem every node sees at the same path. Ctrl-C kills the actors: finished cells stay whole,
running ones stay resumable. Ray is imported only inside `_connect`, so `import cllora` and the
sequential sweep never import it.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from cllora.errors import UserError, brief
from cllora.sweep.estimate import estimate
from cllora.engine.runtime import default_gpu_share
from cllora.sweep.grid import Cell, GridSpec
from cllora.sweep.index import check_cells_compatible, index_entry, write_index
from cllora.sweep.run import (  # the sequential sweep's own
    Log,
    SweepOutcome,
    _announce,
    _check_engines,
    _f,
    _raise_if_failed,
    _Sweep,
)
from cllora.sweep.view import SweepView
from cllora.sweep.worker import CellWorker, model_key

RAY_INSTALL = "pip install 'cllora[flower]' (Flower's simulation extra brings Ray) or pip install 'ray[default]>=2.40'"
FORWARDED_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "CLLORA_CACHE", "HF_HOME")


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # None: start a local Ray instance here (and stop it at the end)
    cell_cpus: float | None = None  # None: 1 CPU per cell
    cell_gpus: float | None = None  # None: 1 GPU per cell where the cluster has GPUs and cells may use them

    def __post_init__(self):
        check_resource("--cell-cpus", self.cell_cpus, minimum_exclusive=True)
        check_resource("--cell-gpus", self.cell_gpus, minimum_exclusive=False)
        address = self.address
        port = (address or "").split("://")[-1].rpartition(":")[2]
        if address is not None and address not in ("auto", "local") and not port.isdigit():
            raise UserError(f"--ray ADDRESS must be host:port, ray://host:port or auto (a running cluster), "
                            f"or nothing for a local Ray instance, got {address!r}")


def check_resource(flag: str, value, *, minimum_exclusive: bool) -> None:
    """A resource per cell: a finite number, > 0 for CPUs, >= 0 for GPUs (fractions share a GPU)."""
    if value is None:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise UserError(f"{flag} must be a finite number, got {value!r}")
    if value < 0 or (minimum_exclusive and value == 0):
        raise UserError(f"{flag} must be {'> 0' if minimum_exclusive else '>= 0'}, got {value:g}")
    if value > 1 and value != int(value):
        raise UserError(f"{flag} above 1 must be a whole number, got {value:g}")


def run_sweep_ray(spec: GridSpec, cells: list[Cell], root: Path, options: RayOptions = RayOptions(), *,
                  console=None, log: Log | None = None, heartbeat: float = 60.0) -> SweepOutcome:
    """Run every unfinished cell into root/<cell name>, as many at once as the cluster holds.
    Failures are recorded and the others go on; RunFailed is raised at the end if any cell failed."""
    root = Path(root).resolve()  # the actors may run in other directories, or on other machines
    check_cells_compatible(cells, root)
    sweep = _Sweep(spec, cells, root, log or (lambda m: None), False, console,
                   {c.name: index_entry(c, root) for c in cells})
    todo = [c for c in cells if sweep.entries[c.name]["status"] != "done"]
    _check_engines(todo)
    flower = [c for c in todo if c.config.engine == "flower-sim"]
    if flower:
        raise UserError(f"cell {flower[0].name}: engine flower-sim runs on Flower's own Ray simulation and "
                        "cannot run inside a Ray sweep; run those cells without --ray")
    ray, stop = _connect(options.address) if todo else (None, None)  # before anything is written
    try:
        scheduler = _Scheduler(ray, sweep, todo, options, console, heartbeat) if todo else None
    except BaseException:  # e.g. resources no node has: refused before the index is written
        if stop:
            stop()
        raise
    start = time.perf_counter()
    try:
        _announce(sweep, todo)
        if scheduler is not None:
            scheduler.run()
    finally:
        if stop:
            stop()
        sweep.outcome.seconds = time.perf_counter() - start
        sweep.outcome.entries = [sweep.entries[c.name] for c in cells]
        write_index(root, spec, sweep.outcome.entries)
    _raise_if_failed(sweep.outcome, root)
    return sweep.outcome


def _connect(address: str | None):
    """(the ray module, a function that disconnects, or None where Ray was already initialised in
    this process, e.g. by a test). Else a local instance, or the cluster at `address`."""
    try:
        import ray  # lazy: only --ray sweeps need Ray (an optional dependency)
    except ImportError:
        raise UserError(f"--ray needs Ray, which is not installed: {RAY_INSTALL}") from None
    if ray.is_initialized():
        return ray, None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    warnings.filterwarnings("ignore", message="Tip: In future versions of Ray", category=FutureWarning)
    quiet = {"log_to_driver": False, "logging_level": "error"}
    temp = None
    if address and address not in ("auto", "local"):
        _check_reachable(address)
    try:
        if address:
            ray.init(address=address, **quiet)
        else:  # socket paths must stay under 108 characters: a short temp dir
            temp = tempfile.mkdtemp(prefix="clr", dir="/tmp")
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, _temp_dir=temp, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
        raise UserError(f"cannot start or reach {where}: {str(exc).strip().splitlines()[0]}") from None

    def stop() -> None:
        ray.shutdown()
        if temp and not os.environ.get("CLLORA_DEBUG"):  # Ray's session logs, kept for debugging
            shutil.rmtree(temp, ignore_errors=True)
    return ray, stop


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """A cluster address must answer a TCP connect: Ray itself retries an unreachable one for minutes."""
    import socket

    host, _, port = address.split("://")[-1].rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot reach the Ray cluster at {address!r} ({exc}); start it with "
                        "`ray start --head` or check the address") from None


def cell_resources(cells: list[Cell], options: RayOptions, nodes: list[dict],
                   gpu_share: float = 1.0) -> tuple[float, float, int]:
    """(CPUs, GPUs) each cell declares and how many cells fit at once on the alive `nodes`
    (their Ray resource dicts). Without --cell-gpus a cell that may use a GPU declares `gpu_share`
    of one (`default_gpu_share`). Refuses requests no node can meet (Ray would wait forever)."""
    has_gpu = any(n.get("GPU", 0) >= 1 for n in nodes)
    gpus = options.cell_gpus
    if gpus is None:
        gpus = gpu_share if has_gpu and any(c.config.device != "cpu" for c in cells) else 0.0
    cpus = 1.0 if options.cell_cpus is None else float(options.cell_cpus)
    cuda = [c for c in cells if c.config.device == "cuda"]
    if cuda and gpus == 0:
        raise UserError(f"cell {cuda[0].name} asks for device cuda, but each cell gets no GPU "
                        f"({'--cell-gpus 0' if has_gpu else 'the Ray cluster has no GPU'})")
    slots = sum(min(int(n.get("CPU", 0) // cpus), int(n.get("GPU", 0) // gpus) if gpus else 10**9)
                for n in nodes)
    if slots == 0:
        most = max((n.get("CPU", 0) for n in nodes), default=0)
        most_gpu = max((n.get("GPU", 0) for n in nodes), default=0)
        raise UserError(f"no Ray node has {cpus:g} CPU(s) and {gpus:g} GPU(s) for a cell (the largest has "
                        f"{most:g} CPUs and {most_gpu:g} GPUs); lower --cell-cpus / --cell-gpus")
    return cpus, gpus, slots


class _Scheduler:
    """Hands the cells to a pool of actors and records each result as it arrives."""

    def __init__(self, ray, sweep: _Sweep, todo: list[Cell], options: RayOptions, console, heartbeat: float):

        self.ray, self.sweep, self.pending = ray, sweep, list(todo)
        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        share, why = default_gpu_share([c.config for c in {model_key(c): c for c in todo}.values()]) \
            if options.cell_gpus is None and any(n.get("GPU", 0) >= 1 for n in nodes) else (1.0, "")
        self.cpus, self.gpus, fit = cell_resources(todo, options, nodes, share)
        self.share_note = f" ({why}; --cell-gpus overrides)" if self.gpus and why else ""
        hidden = self.gpus == 0 and any(n.get("GPU", 0) >= 1 for n in nodes)
        if hidden and any(c.config.device == "auto" for c in todo):
            sweep.say("warning: the cluster has GPUs but each cell gets none (--cell-gpus 0): cells with "
                      "device auto run on the CPU")
        self.slots = min(fit, len(todo))
        costs, rate, _ = estimate(todo, sweep.root)
        self.view = SweepView(sweep.root, costs, {c.name: c.config.rounds for c in todo},
                              [c.name for c in todo], self.slots, rate, console=console, say=sweep.say,
                              heartbeat=heartbeat)
        self.actors: list = [None] * self.slots
        self.holding: list[tuple | None] = [None] * self.slots
        self.running: dict = {}  # object ref -> (actor index, cell, start time)
        self.resume = {c.name: sweep.entries[c.name]["status"] == "partial" for c in todo}

    def run(self) -> None:
        self.sweep.say(f"ray: {self.slots} cell(s) at once, each with {self.cpus:g} CPU(s) and "
                       f"{self.gpus:g} GPU(s){self.share_note}")
        try:
            self._loop()
        except KeyboardInterrupt:
            self._stop_all()
            for _, cell, _ in self.running.values():  # as far as it got: resumable on a rerun
                self.sweep.entries[cell.name] = index_entry(cell, self.sweep.root)
            self.sweep.say(f"interrupted: {len(self.running)} running cell(s) stopped; rerun to resume them")
            raise
        finally:
            self.view.close()
            self._stop_all()

    def _loop(self) -> None:
        free = list(range(self.slots))
        while self.pending or self.running:
            while free and self.pending:
                self._submit(free.pop(0))
            ready, _ = self.ray.wait(list(self.running), num_returns=1, timeout=1.0)
            self.view.tick()
            for ref in ready:
                free.append(self._collect(ref))

    def _submit(self, i: int) -> None:
        cell = self._pick(i)
        self.pending.remove(cell)
        if self.actors[i] is None:
            self.actors[i] = self._new_actor()
        self.holding[i] = model_key(cell)
        ref = self.actors[i].run.remote(cell, str(self.sweep.root), self.resume[cell.name])
        self.running[ref] = (i, cell, time.perf_counter())
        self.sweep.record(cell, "running")
        self.view.start(cell.name)

    def _pick(self, i: int) -> Cell:
        """The next cell of the model actor i holds; else of the model fewest actors hold per cell left."""
        same = [c for c in self.pending if model_key(c) == self.holding[i]]
        if same:
            return same[0]
        left: dict[tuple, int] = {}
        for c in self.pending:
            left[model_key(c)] = left.get(model_key(c), 0) + 1
        key = max(left, key=lambda k: left[k] / (1 + sum(h == k for h in self.holding)))
        return next(c for c in self.pending if model_key(c) == key)

    def _new_actor(self):
        env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
        worker = self.ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, max_restarts=0)(CellWorker)
        return worker.options(runtime_env={"env_vars": env}).remote(threads=max(1, int(self.cpus)),
                                                                    gpus=self.gpus)

    def _collect(self, ref) -> int:
        """Record a finished task's result; returns the actor index (free again)."""
        i, cell, started = self.running.pop(ref)
        try:
            result = self.ray.get(ref)
        except Exception as exc:  # the actor died (killed, out of memory, crashed): a fresh one next
            result = {"status": "failed", "seconds": time.perf_counter() - started, "load_error": False,
                      "error": f"Ray worker lost: {brief(exc)}", "loaded": False, "warnings": []}
            self._kill(i)
        for line in result["warnings"]:
            self.sweep.say(line)
        self.sweep.outcome.model_loads += int(result["loaded"])
        if result["status"] == "done":
            self._done(cell, result["seconds"])
        else:
            self._failed(cell, result["seconds"], result["error"])
            if result["load_error"]:  # as the sequential sweep: the model's other cells fail too
                self.holding[i] = None
                for other in [c for c in self.pending if model_key(c) == model_key(cell)]:
                    self.pending.remove(other)
                    self._failed(other, None, result["error"])
        return i

    def _done(self, cell: Cell, seconds: float) -> None:
        self.sweep.record(cell, seconds=seconds)
        self.sweep.outcome.ran += 1
        e = self.sweep.entries[cell.name]
        self.view.done(cell.name, seconds, f": test loss {_f(e['initial_test_loss'])} → "
                                           f"{_f(e['final_test_loss'])} (best {_f(e['best_test_loss'])} "
                                           f"at round {e['best_round']})")

    def _failed(self, cell: Cell, seconds: float | None, error: str) -> None:
        self.sweep.record(cell, "failed", seconds=seconds, error=error)
        self.sweep.outcome.failed += 1
        self.view.failed(cell.name, seconds, error)

    def _kill(self, i: int) -> None:
        if self.actors[i] is not None:
            try:
                self.ray.kill(self.actors[i], no_restart=True)
            except Exception:
                pass  # already gone
        self.actors[i], self.holding[i] = None, None

    def _stop_all(self) -> None:
        for i in range(len(self.actors)):
            self._kill(i)
