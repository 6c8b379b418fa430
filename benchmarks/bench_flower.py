"""The same experiment through the three engines, measured in one run (issue 6).

  python benchmarks/bench_flower.py [--clients 6] [--rounds 2]

in-process      cllora's own loop, one base model, adapters swapped (cllora run)
flower-sim      Flower's simulation engine: Ray actors, one per CPU core (cllora run --engine flower-sim)
flower-procs    a real SuperLink and one SuperNode process per client on loopback (flwr run)

For each: wall time of the whole run (start-up included), mean round time after round 0, the
clients' own training seconds, and the peak resident memory of the whole process tree (sampled
every 0.2 s: driver, Ray workers or SuperLink/SuperNodes/ClientApps). For the real processes also
where each message's time went (the run's flower_messages.csv, `cllora.flower.timing`): dispatch
(SuperNode polling, process spawn), start-up (Python, flwr, the app module), imports (torch,
transformers, peft), load (tokenizer, model, LoRA), data, compute, return (upload, server polling).
Prints markdown tables to paste into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import psutil  # noqa: E402  (installed with flwr[simulation])
import torch  # noqa: E402

from cllora import records  # noqa: E402
from cllora.config.settings import RunConfig  # noqa: E402
from cllora.flower.timing import FILE  # noqa: E402

MODEL = "smollm2-135m"


def machine() -> str:
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    return f"{cpu}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, torch {torch.__version__}"


class PeakMemory:
    """Peak summed RSS of a set of processes and all their descendants, sampled in a thread."""

    def __init__(self, roots):
        self.roots, self.peak, self._stop = roots, 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _sample(self):
        while not self._stop.is_set():
            total, seen = 0, set()
            for pid in self.roots():
                try:
                    root = psutil.Process(pid)
                    for p in [root, *root.children(recursive=True)]:
                        if p.pid not in seen:
                            seen.add(p.pid)
                            total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            time.sleep(0.2)


def experiment(clients: int, rounds: int) -> RunConfig:
    return RunConfig(model=MODEL, dataset="sotu", clients=clients, clients_per_round=2, rounds=rounds,
                     max_train_examples=40 * clients, max_test_examples=32, max_length=128,
                     batch_size=8, lr=2e-3, scheme="iid", seed=0, round_timeout=600.0)


CHILD = """
import sys
from pathlib import Path
from cllora.config.settings import from_dict
import json
config = from_dict(json.loads(sys.argv[1]))
if config.engine == "flower-sim":
    from cllora.flower.server import run_flower_simulation
    run_flower_simulation(config, Path(sys.argv[2]), log=lambda m: None)
else:
    from cllora.engine.loop import run_experiment
    run_experiment(config, Path(sys.argv[2]), log=lambda m: None)
"""


def in_this_machine(config: RunConfig, out: Path) -> tuple[float, int]:
    """In-process or flower-sim in a child process: (wall seconds, peak tree RSS bytes)."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(config.to_dict()), str(out)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    with PeakMemory(lambda: [child.pid]) as mem:
        _, err = child.communicate()
    if child.returncode:
        raise RuntimeError(err[-3000:])
    return time.perf_counter() - start, mem.peak


def with_processes(config: RunConfig, out: Path, tmp: Path) -> tuple[float, int]:
    from cllora.flower.app import write_app
    from cllora.flower.local import LocalFederation

    (tmp / "exp.toml").write_text(config.to_toml())
    write_app(tmp / "app", tmp / "exp.toml", out)
    start = time.perf_counter()
    with LocalFederation(config.clients) as fed:
        with PeakMemory(fed.pids) as mem:  # SuperLink, its superexec helper, SuperNodes, ClientApps
            row = fed.run(tmp / "app", timeout=3000)
    if row["status"] != "finished:completed":
        raise RuntimeError(f"flower run failed: {row}")
    return time.perf_counter() - start, mem.peak


def describe(label: str, out: Path, wall: float, peak: int) -> dict:
    rounds = [r for r in records.read_csv(out / "rounds.csv") if r["round"] > 0]
    clients = [c for c in records.read_csv(out / "clients.csv") if c["round"] > 0 and c["participated"]]
    summary = json.loads((out / "summary.json").read_text())
    per_round = sum(r["round_seconds"] for r in rounds) / len(rounds)
    return {"engine": label, "wall": wall, "round": per_round,
            "client_phase": sum(r["train_seconds"] for r in rounds) / len(rounds),
            "client_compute": sum(c["train_seconds"] for c in clients) / len(rounds),
            "eval": sum(r["eval_seconds"] for r in rounds) / len(rounds),
            "peak_mb": peak / 2**20, "final_loss": summary["final_test_loss"]}


STEPS = ("dispatch_s", "startup_s", "import_s", "load_s", "data_s", "compute_s", "return_s", "total_s")


def message_breakdown(rows: list[dict]) -> None:
    """Mean seconds per message and step, by message kind (rows of a run's flower_messages.csv)."""
    print("\n### Where a real-process message's time goes (mean seconds per message)\n")
    print("| message | n | threads | dispatch | start-up | imports | load | data | compute | return | total |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for kind in ("train", "evaluate"):
        mine = [r for r in rows if r["kind"] == kind]
        if mine:
            means = " | ".join(f"{sum(r[k] for r in mine) / len(mine):.1f}" for k in STEPS)
            print(f"| {kind} | {len(mine)} | {mine[0]['threads']} | {means} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=6, help="clients N (2 per round) [6]")
    parser.add_argument("--rounds", type=int, default=2, help="rounds [2]")
    args = parser.parse_args()
    config = experiment(args.clients, args.rounds)
    print(f"machine: {machine()}, Python {platform.python_version()}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bf", dir="/tmp") as tmp:
        tmp = Path(tmp)
        for label, engine in (("in-process", "inprocess"), ("flower-sim", "flower-sim")):
            out = tmp / label
            wall, peak = in_this_machine(config.replace(engine=engine), out)
            rows.append(describe(label, out, wall, peak))
            print(f"  {label}: {wall:.0f} s", file=sys.stderr, flush=True)
        wall, peak = with_processes(config, tmp / "flower-procs", tmp)
        rows.append(describe("flower-procs", tmp / "flower-procs", wall, peak))
        messages = records.read_csv(tmp / "flower-procs" / FILE)
    base = rows[0]
    print(f"\n### One experiment, three engines ({MODEL}, {args.clients} clients, 2 per round, "
          f"{args.rounds} rounds, 40 texts per client, max_length 128)\n")
    print("| engine | wall, whole run (s) | × in-process | per round (s) | × in-process | client phase (s/round) "
          "| clients' training (s/round) | evaluation (s/round) | peak RSS, all processes (MB) "
          "| × in-process | final test loss |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['engine']} | {r['wall']:.0f} | {r['wall'] / base['wall']:.2f}× | {r['round']:.1f} | "
              f"{r['round'] / base['round']:.2f}× | {r['client_phase']:.1f} | {r['client_compute']:.1f} | "
              f"{r['eval']:.1f} | {r['peak_mb']:.0f} | {r['peak_mb'] / base['peak_mb']:.2f}× | "
              f"{r['final_loss']:.4f} |")
    message_breakdown(messages)


if __name__ == "__main__":
    main()
