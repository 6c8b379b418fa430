"""Where a Flower message's time goes: the ClientApp's clock readings and the server's rows of them.

A real SuperNode starts a fresh ClientApp process for every message. The ClientApp puts in its
reply's metrics when its process started, when its handler was entered and left (wall clock),
its torch thread count, and the seconds it spent importing torch/transformers/peft, loading the
tokenizer and model, preparing its data and computing. The server adds when it pushed the
message and when it pulled the reply. On one host (one clock) `message_row` splits a round trip
into dispatch (the SuperNode's polling and the process spawn), start-up (Python, flwr and the app
module), imports, load, data, compute and return (upload and the server's polling). Under
Flower's simulation engine the process is a long-lived Ray worker: start-up means nothing there.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

FILE = "flower_messages.csv"  # in the run directory, written by a `flwr run` deployment
CLOCKS = ("t-process-start", "t-entry", "t-exit")  # wall-clock readings in the reply's metrics
SECONDS = ("import-seconds", "load-seconds", "data-seconds", "compute-seconds")
COLUMNS = ("round", "kind", "client_id", "threads", "dispatch_s", "startup_s", "import_s", "load_s",
           "data_s", "compute_s", "return_s", "total_s")


def process_age() -> float:
    """Seconds since this process started (from /proc, to 10 ms; NaN where there is no /proc)."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        return time.clock_gettime(time.CLOCK_BOOTTIME) - int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return float("nan")


def heavy_imports() -> float:
    """Import what a train or evaluate message needs (torch, transformers' auto classes, peft;
    the model's own class loads with the model); the seconds it took (about 0 when this process
    has them already)."""
    start = time.perf_counter()
    import peft  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401

    import cllora.engine.experiment  # noqa: F401
    import cllora.model  # noqa: F401

    return time.perf_counter() - start


def message_row(round_num: int, kind: str, client_id: int, sent: float, arrived: float,
                metrics) -> dict | None:
    """One message's breakdown in seconds (None when the reply carries no clock readings)."""
    if not all(key in metrics for key in CLOCKS + SECONDS):
        return None
    m = {key: float(metrics[key]) for key in CLOCKS + SECONDS}
    return {"round": round_num, "kind": kind, "client_id": client_id,
            "threads": int(metrics.get("threads", 0)),
            "dispatch_s": m["t-process-start"] - sent, "startup_s": m["t-entry"] - m["t-process-start"],
            "import_s": m["import-seconds"], "load_s": m["load-seconds"], "data_s": m["data-seconds"],
            "compute_s": m["compute-seconds"], "return_s": arrived - m["t-exit"], "total_s": arrived - sent}
