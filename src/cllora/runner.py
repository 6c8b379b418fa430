"""Run one config on its engine, with what every run gets: the in-process loop
(cllora.engine.loop) or Flower's simulation (cllora.flower.server), and the run's figures
(cllora.report.run_figures, a listener). Commands and sweeps start runs here; the engines know
nothing of each other or of figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from cllora.config.settings import RunConfig
from cllora.engine.loop import run_experiment
from cllora.engine.progress import RunProgress
from cllora.errors import UserError
from cllora.report.run_figures import drawing_figures


def engine_runner(engine: str) -> Callable[..., dict]:
    """The function that runs a config on `engine`: `run_experiment` in-process, Flower's
    simulation for "flower-sim" (a UserError saying how to install Flower where it is missing)."""
    if engine != "flower-sim":
        return run_experiment
    try:
        from cllora.flower.server import run_flower_simulation  # lazy: flwr is an optional extra
    except ImportError as exc:
        raise UserError(f"engine flower-sim needs Flower: pip install 'cllora[flower]' ({exc})") from None
    return run_flower_simulation


def run(config: RunConfig, out: Path, *, progress: RunProgress | None = None, **kwargs) -> dict:
    """Run (or resume, with resume=True) `config` into `out` on its engine, drawing the run's
    figures; `kwargs` go to the engine (in-process: base_model/tokenizer to reuse a loaded model)."""
    return engine_runner(config.engine)(config, out, progress=drawing_figures(progress), **kwargs)
