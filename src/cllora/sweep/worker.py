"""One worker of a parallel sweep: runs cells one at a time on a base model it keeps loaded.

`CellWorker` is a plain class (no Ray import here): `cllora.sweep.on_ray` turns it into a Ray actor
with the cell's declared CPUs and GPUs. Like the sequential sweep, a worker keeps the last base
model it loaded and reuses it for the next cell of the same (model, device, precision); it loads
again only for another model, or after a failed cell left LoRA layers on the base model. Every
cell writes its own run directory (run.log, rounds.csv, ...) under the sweep root, which on a
cluster is a shared filesystem; the worker returns a small result dict, never raises for a cell.
"""

from __future__ import annotations

import gc
import os
import time
from pathlib import Path

from cllora.engine.runtime import build_runtime
from cllora.errors import brief
from cllora.sweep.grid import Cell
from cllora.sweep.run import _cell_logger, _has_lora  # the sequential sweep's helpers


def model_key(cell: Cell) -> tuple:
    """Cells with the same key can share one loaded base model (the device and precision are
    resolved inside the worker, on the machine that runs the cell)."""
    c = cell.config
    return (c.engine, c.model, c.device, c.precision)


class CellWorker:
    """Runs in-process cells of any model; holds at most one base model at a time."""

    def __init__(self, threads: int = 1, gpus: float = 0.0):
        import torch

        torch.set_num_threads(max(1, int(threads)))
        self.gpus = gpus  # the share of a GPU Ray gave this worker
        self.key: tuple | None = None
        self.runtime = None
        self.loads = 0

    def ping(self) -> dict:
        """Where this worker runs (for the log) and that it started."""
        import socket

        import torch

        return {"host": socket.gethostname(), "pid": os.getpid(), "threads": torch.get_num_threads()}

    def run(self, cell: Cell, root: str, resume: bool) -> dict:
        """Run (or resume) one cell into root/<cell name>. Returns {"status": "done" | "failed",
        "seconds", "error", "load_error" (the base model could not be loaded), "loaded" (this call
        loaded a base model), "warnings" (log lines the sweep shows)}."""
        warnings: list[str] = []
        cell_dir = Path(root) / cell.name
        log = _cell_logger(cell_dir, warnings.append)
        result = {"status": "done", "seconds": 0.0, "error": None, "load_error": False,
                  "loaded": False, "warnings": warnings}
        missing = self.missing_gpu(cell)
        if missing:
            log(f"failed: {missing}")
            return {**result, "status": "failed", "error": missing}
        try:
            result["loaded"] = self._ensure_runtime(cell, log)
        except Exception as exc:  # e.g. a weights package not installed: this model's cells fail
            return {**result, "status": "failed", "error": brief(exc), "load_error": True}
        start = time.perf_counter()
        try:
            from cllora.runner import run  # lazy: torch, loaded in the Ray actor

            run(cell.config, cell_dir, resume=resume, overwrite=False,
                           base_model=self.runtime.model, tokenizer=self.runtime.tokenizer, log=log)
        except Exception as exc:
            result.update(status="failed", error=brief(exc))
            log(f"failed: {brief(exc)}")
        result["seconds"] = time.perf_counter() - start
        if _has_lora(self.runtime.model):  # a failure left LoRA on it: load afresh next time
            self.runtime, self.key = None, None
        return result

    def missing_gpu(self, cell: Cell) -> str | None:
        """Why a cell that was given a GPU cannot use one (it would run on one CPU thread), or None."""
        if self.gpus <= 0 or cell.config.device == "cpu":
            return None
        from cllora.device import cuda_unusable_reason  # lazy: torch

        reason = cuda_unusable_reason()
        if reason is None:
            return None
        return (f"this Ray worker was given {self.gpus:g} GPU but CUDA is not usable in it: {reason} "
                f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}); refusing to run the "
                "cell on one CPU thread: fix the node's torch or driver, or pass --cell-gpus 0 to run on CPUs")

    def _ensure_runtime(self, cell: Cell, log) -> bool:
        """Load the cell's tokenizer and base model unless this worker already holds them."""
        if self.runtime is not None and self.key == model_key(cell):
            return False

        self.runtime, self.key = None, None  # let the old model go before loading the next
        gc.collect()
        self.runtime = build_runtime(cell.config, log=log)
        self.key = model_key(cell)
        self.loads += 1
        return True
