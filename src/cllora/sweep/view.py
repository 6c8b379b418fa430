"""The one progress view of a parallel sweep: cells done / running / failed / pending and an ETA.

Every event (a cell starts, finishes or fails) is one plain line that carries the counts and the
ETA, so a log file or a pipe reads as well as a terminal. In a terminal a bar under those lines
shows the same counts live; elsewhere a line every `heartbeat` seconds names the running cells
with the round each has reached (read from their checkpoints). The ETA spreads the estimated
seconds still to run (`cllora.sweep.estimate`, recalibrated on every cell that finishes here)
over the cells that run at once.
"""

from __future__ import annotations

import time
from pathlib import Path

from cllora.records import checkpoint_round
from cllora.sweep.estimate import CellCost
from cllora.sweep.run import duration


class SweepView:
    def __init__(self, root: Path, costs: list[CellCost], rounds: dict[str, int], todo: list[str],
                 slots: int, rate: float, *, console=None, say=None, heartbeat: float = 60.0):
        self.root, self.rounds, self.slots, self.rate = Path(root), rounds, max(1, slots), rate
        self.cost = {c.name: c for c in costs}
        self.state = {name: "pending" for name in todo}
        self.started: dict[str, float] = {}
        self.finished: list[tuple[float, float | None]] = []  # (seconds, TFLOP) of cells run here
        self.console, self.say = console, say or (lambda m: None)
        self.heartbeat, self._last_beat = heartbeat, time.monotonic()
        self._bar = self._task = None
        if console is not None and getattr(console, "is_terminal", False):
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self._bar = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.description}"), console=console, transient=True)
            self._task = self._bar.add_task("", total=len(todo))
            self._bar.start()

    # ---------------------------------------------------------------- events

    def start(self, name: str, where: str = "") -> None:
        self.state[name], self.started[name] = "running", time.monotonic()
        self._line(f"{name} started{where}")

    def done(self, name: str, seconds: float, text: str = "") -> None:
        self._end(name, "done", seconds)
        self._line(f"{name} done in {duration(seconds)}{text}")

    def failed(self, name: str, seconds: float | None, error: str) -> None:
        self._end(name, "failed", seconds)
        after = f" after {duration(seconds)}" if seconds else ""
        self._line(f"{name} failed{after}: {error}")

    def tick(self) -> None:
        """Refresh the bar; off a terminal, a heartbeat line now and then."""
        self._refresh()
        if self._bar is None and time.monotonic() - self._last_beat >= self.heartbeat:
            self._last_beat = time.monotonic()
            running = [f"{n} (round {max(0, checkpoint_round(self.root / n))}/{self.rounds[n]}, "
                       f"{duration(time.monotonic() - self.started[n])})"
                       for n, s in self.state.items() if s == "running"]
            if running:
                self.say(f"[{self.counts()}] running: {', '.join(running)}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    # ---------------------------------------------------------------- counts and ETA

    def counts(self) -> str:
        n = {s: sum(v == s for v in self.state.values()) for s in ("done", "running", "failed", "pending")}
        text = (f"{n['done']}/{len(self.state)} done, {n['running']} running, {n['failed']} failed, "
                f"{n['pending']} pending")
        eta = self.eta()
        return text + (f", ETA ~{duration(eta)}" if eta is not None else "")

    def eta(self) -> float | None:
        """Seconds until the last cell ends: the estimated seconds still to run over the slots."""
        left = [n for n, s in self.state.items() if s in ("pending", "running")]
        if not left:
            return None
        rate, mean = self._rate(), self._mean_seconds()
        total = 0.0
        for name in left:
            cost = self.cost.get(name)
            if cost is not None and cost.tflop is not None:
                est = cost.tflop * rate * (1 - cost.done_share)
            elif mean is not None:
                est = mean
            else:
                return None
            if name in self.started:
                est = max(0.0, est - (time.monotonic() - self.started[name]))
            total += est
        return total / min(self.slots, len(left))

    def _rate(self) -> float:
        measured = [(s, t) for s, t in self.finished if t]
        if measured:
            return sum(s for s, _ in measured) / sum(t for _, t in measured)
        return self.rate

    def _mean_seconds(self) -> float | None:
        return sum(s for s, _ in self.finished) / len(self.finished) if self.finished else None

    # ---------------------------------------------------------------- output

    def _end(self, name: str, state: str, seconds: float | None) -> None:
        self.state[name] = state
        if state == "done" and seconds:
            cost = self.cost.get(name)
            tflop = cost.tflop * (1 - cost.done_share) if cost and cost.tflop else None
            self.finished.append((seconds, tflop))

    def _line(self, message: str) -> None:
        self.say(f"[{self.counts()}] {message}")
        self._last_beat = time.monotonic()
        self._refresh()

    def _refresh(self) -> None:
        if self._bar is not None:
            ended = sum(s in ("done", "failed") for s in self.state.values())
            self._bar.update(self._task, completed=ended, description=self.counts())
