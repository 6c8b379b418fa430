"""What a sweep's cells will cost: floating-point work from each cell's texts, rounds and model,
turned into seconds by the measured seconds of cells already finished (else by a default rate).

Used by `cllora sweep --dry-run` (a cost column and a total) and by the progress view of a Ray
sweep (its ETA). The work of a cell is counted, not measured: 4·N FLOPs per trained token (forward,
backward through the frozen base, no weight gradients) and 2·N per scored token, every text taken
at its max_length (an upper bound; calibrating on finished cells absorbs the real share of padding
and short texts). It is a sizing aid, good to a factor of about two, not a benchmark.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

from cllora import records
from cllora.sweep.grid import Cell
from cllora.sweep.index import cell_status
from cllora.sweep.run import duration

# parameters of the embedded models, rounded (their GGUF need not be converted to count them)
KNOWN_PARAMS = {"smollm2-135m": 134_500_000, "gemma3-270m": 268_000_000}
# Seconds per TFLOP of counted work when no finished cell calibrates it: a study-length --quick
# cell of smollm2-135m (3.5-3.7 min measured on 2 CPU cores, README) counts 47 TFLOP.
DEFAULT_SECONDS_PER_TFLOP = 4.5


@dataclass
class CellCost:
    name: str
    tflop: float | None  # counted work; None where it cannot be counted (all texts, unknown model)
    measured: float | None  # seconds of its rounds already run (rounds.csv), None when none ran
    done_share: float  # share of its rounds completed
    seconds: float | None = None  # estimate of the seconds still to run


@functools.lru_cache(maxsize=None)
def model_params(name: str) -> int | None:
    """Parameter count of a model from its config alone (meta device), None if it cannot be read."""
    if name in KNOWN_PARAMS:
        return KNOWN_PARAMS[name]
    try:
        from cllora.model import meta_model  # lazy: torch, transformers

        return sum(p.numel() for p in meta_model(name).parameters())
    except Exception:  # e.g. a hub model without network: the estimate says "?"
        return None


def cell_tflop(cell: Cell) -> float | None:
    """Counted work of a whole cell, in TFLOP (see the module docstring)."""
    c = cell.config
    params = model_params(c.model)
    if params is None or c.max_train_examples is None:
        return None
    local_train = c.max_train_examples * (1 - c.local_test_fraction)
    train_tokens = c.rounds * c.clients_per_round * c.local_epochs * (local_train / c.clients) * c.max_length
    evaluations = 1 + math.ceil(c.rounds / max(1, c.eval_every))
    eval_len = c.eval_max_length or c.max_length
    test = (c.max_test_examples or 0) * eval_len * (1 + c.eval_local_models)
    fairness = 0.0
    if c.fairness_every:
        fairness = (1 + math.ceil(c.rounds / c.fairness_every)) * c.max_train_examples * c.local_test_fraction * eval_len
    scored = evaluations * test + fairness
    return (4 * params * train_tokens + 2 * params * scored) / 1e12


def measured_seconds(cell_dir: Path) -> float | None:
    """Seconds of the rounds a run directory holds (the sum of rounds.csv's round_seconds)."""

    path = Path(cell_dir) / "rounds.csv"
    if not path.is_file():
        return None
    try:
        rows = records.read_csv(path)
    except Exception:
        return None
    seconds = [r.get("round_seconds") for r in rows]
    return float(sum(s for s in seconds if isinstance(s, (int, float)))) if rows else None


def estimate(cells: list[Cell], root: Path) -> tuple[list[CellCost], float, str]:
    """Each cell's cost, the seconds per TFLOP used, and where that rate comes from."""

    costs = []
    for cell in cells:
        status, last = cell_status(root, cell)
        share = 1.0 if status == "done" else max(0, last) / max(1, cell.config.rounds)
        costs.append(CellCost(cell.name, cell_tflop(cell), measured_seconds(Path(root) / cell.name), share))
    rate, basis = calibrate(costs)
    for cost in costs:
        if cost.tflop is not None:
            cost.seconds = cost.tflop * rate * (1 - cost.done_share)
    return costs, rate, basis


def calibrate(costs: list[CellCost]) -> tuple[float, str]:
    """Seconds per TFLOP measured on the finished cells, or the default rate."""
    done = [c for c in costs if c.done_share >= 1 and c.measured and c.tflop]
    if not done:
        return DEFAULT_SECONDS_PER_TFLOP, ("default rate (no finished cell here yet; calibrated on a "
                                           "2-core CPU: on a GPU expect much less)")
    rate = sum(c.measured for c in done) / sum(c.tflop for c in done)
    return rate, f"measured on {len(done)} finished cell(s) of this sweep"


def cost_column(cost: CellCost) -> str:
    """What --dry-run shows for one cell."""
    if cost.done_share >= 1:
        return f"done in {_dur(cost.measured)}" if cost.measured is not None else "done"
    if cost.seconds is None:
        return "?"
    left = "" if cost.done_share == 0 else " left"
    return f"~{_dur(cost.seconds)}{left} ({cost.tflop:.2g} TFLOP)"


def summary_line(costs: list[CellCost], basis: str, parallel: int | None = None) -> str:
    """The total still to run, and the wall time at `parallel` cells at once."""
    todo = [c for c in costs if c.done_share < 1]
    known = [c.seconds for c in todo if c.seconds is not None]
    if not todo:
        return "nothing left to run"
    total = sum(known)
    unknown = f" (+{len(todo) - len(known)} cell(s) that cannot be estimated)" if len(known) < len(todo) else ""
    line = f"estimate: ~{_dur(total)} of cell time for {len(todo)} cell(s){unknown}; {basis}"
    if parallel and parallel > 1:
        line += f"; with {parallel} cells at once about {_dur(total / parallel)} of wall time"
    return line


def _dur(seconds: float | None) -> str:
    return "?" if seconds is None else duration(seconds)
