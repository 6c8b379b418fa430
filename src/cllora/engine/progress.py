"""Progress display of a run: rounds, local steps with loss and ETA, one log line per round (rich)."""

from __future__ import annotations

import contextlib
import math

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class RunProgress:
    """Callbacks the engine calls; does nothing when disabled (tests, library use)."""

    def __init__(self, enabled: bool = True, console: Console | None = None, label: str = ""):
        self.enabled = enabled
        self.console = console or Console(stderr=True)
        self.label = label
        self._progress: Progress | None = None
        self._rounds = self._steps = None
        self.listeners: list = []  # e.g. cllora.engine.tracking's trackers, cllora.report.run_figures

    def add_listener(self, listener) -> None:
        """Tell `listener` what the run does, even when the display is off: each of its methods
        `run_started(out, partition)`, `round_done(row)` and `run_finished(out, rounds, clients)`
        that it has is called at that point of the run."""
        self.listeners.append(listener)

    def _tell(self, event: str, *args) -> None:
        for listener in self.listeners:
            handler = getattr(listener, event, None)
            if handler is not None:
                handler(*args)

    def run_started(self, out, partition: dict) -> None:
        """The run directory holds its config and partition.json; training starts next."""
        self._tell("run_started", out, partition)

    def run_finished(self, out, rounds: list[dict], clients: list[dict]) -> None:
        """The last round is saved, with summary.json."""
        self._tell("run_finished", out, rounds, clients)

    def log(self, message: str) -> None:
        if self.enabled:
            self.console.print(message, highlight=False, soft_wrap=True)

    @contextlib.contextmanager
    def run(self, total_rounds: int, start: int = 0):
        if not self.enabled:
            yield self
            return
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn(), console=self.console, transient=True)
        with self._progress:
            self._rounds = self._progress.add_task(f"{self.label}rounds", total=total_rounds,
                                                   completed=max(start, 0), info="")
            self._steps = self._progress.add_task("  local steps", total=None, info="")
            yield self
        self._progress = None

    def client_start(self, client_id: int, num_examples: int, config) -> None:
        if self._progress is None:
            return
        steps = math.ceil(num_examples / config.batch_size) * config.local_epochs
        self._progress.reset(self._steps, total=steps, description=f"  client {client_id} steps",
                             info="")

    def step(self, loss: float | None) -> None:
        """One local step; `loss` is None on a GPU (reading it would stall the GPU every step)."""
        if self._progress is not None:
            info = {} if loss is None else {"info": f"loss {loss:.3f}"}
            self._progress.update(self._steps, advance=1, **info)

    def eval_tick(self) -> None:
        pass  # evaluation is short next to training; the round line reports its time

    def round_done(self, row: dict) -> None:
        """One line per round: the evaluation when the round was evaluated, else training only."""
        self._tell("round_done", row)
        evaluated = row.get("global_test_loss") is not None
        if self._progress is not None and row["round"] > 0:
            info = f"test loss {row['global_test_loss']:.4f}" if evaluated else ""
            self._progress.update(self._rounds, completed=row["round"], info=info)
        if not self.enabled:
            return
        if evaluated:
            local = row.get("local_models_test_loss_mean")
            extra = f"  local models {local:.4f}" if local is not None else ""
            fair = row.get("fairness_var")
            fair_text = f"  fairness var {fair:.5f}" if fair is not None else ""
            text = f"test loss {row['global_test_loss']:.4f}  ppl {row['global_test_ppl']:.2f}{fair_text}{extra}"
        else:
            train = row.get("train_loss_mean")
            text = "not evaluated" + (f"  train loss {train:.4f}" if train is not None else "")
        self.console.print(f"{self.label}round {row['round']:>3}  {text}  ({row['train_seconds']:.0f}s "
                           f"train, {row['eval_seconds']:.0f}s eval)", highlight=False, soft_wrap=True)
