"""A sweep of small cells run one after another vs in parallel on a local Ray instance (issue 22).

  python benchmarks/bench_ray_sweep.py [--cells 4] [--rounds 2] [--cell-cpus 1] [--smoke]
  python benchmarks/bench_ray_sweep.py --device cuda --cell-gpus 0.25     # 4 cells on one GPU

sequential   `cllora sweep --config grid.toml` (one process, one base model, torch on every core)
ray          `cllora sweep --config grid.toml --ray --cell-cpus C` (a local Ray instance; each cell
             an actor with C CPUs and C torch threads; an actor keeps its base model across cells)

Each sweep runs in a child process; wall time covers everything (Ray's start and stop included) and
peak memory is the summed RSS of the child's whole process tree (driver, Ray's daemons, workers),
sampled every 0.2 s. The two sweeps' rounds.csv must agree (timing columns aside). On 2 cores the
gain is bounded by 2x, and every actor holds its own copy of the base model. The load average is
printed before and after: the timings mean something only on an otherwise idle machine.
`--smoke` runs the same on a tiny random OPT model in seconds (checks the script, measures nothing).
"""

from __future__ import annotations

import argparse
import math
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_flower import PeakMemory, machine  # noqa: E402  (the sibling script: same machine line)

from cllora import records  # noqa: E402

MODEL = "smollm2-135m"


def grid_toml(model: str, cells: int, rounds: int, smoke: bool, device: str = "cpu") -> str:
    """`cells` cells of the same model: length skew alpha 0.1 and IID, over seeds."""
    seeds = list(range(math.ceil(cells / 2)))
    return (f'[run]\nmodel = "{model}"\ndataset = "sotu"\nclients = 4\nclients_per_round = 2\n'
            f"rounds = {rounds}\nmax_train_examples = {120 if smoke else 160}\nmax_test_examples = {16 if smoke else 32}\n"
            f"max_length = {48 if smoke else 128}\nbatch_size = 8\nrank = 2\nlr = 2e-3\nalpha = 0.1\n"
            f'precision = "fp32"\ndevice = "{device}"\n'
            f'[grid]\nscheme = ["length", "iid"]\nseed = {seeds}\n')


def timed_sweep(grid: Path, out: Path, extra: list[str]) -> tuple[float, int]:
    """(wall seconds, peak RSS bytes of the process tree) of one `cllora sweep` in a child process."""
    cmd = [sys.executable, "-c", "import sys; from cllora.cli import main; sys.exit(main())",
           "sweep", "--config", str(grid), "--out", str(out), "--no-report", "--quiet", *extra]
    start = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    with PeakMemory(lambda: [child.pid]) as mem:
        _, err = child.communicate()
    if child.returncode:
        raise RuntimeError(f"{' '.join(cmd[3:])} failed:\n{err[-3000:]}")
    return time.perf_counter() - start, mem.peak


def largest_difference(a: Path, b: Path) -> tuple[float, str]:
    """The largest relative difference between the two sweeps' rounds.csv values (timing columns
    aside) and the column it is in; inf where a value is missing or of another kind."""
    worst, where = 0.0, "-"
    for rounds_csv in sorted(a.rglob("rounds.csv")):
        rows_a = records.read_csv(rounds_csv)
        rows_b = records.read_csv(b / rounds_csv.relative_to(a))
        for ra, rb in zip(rows_a, rows_b, strict=True):
            for k, v in ra.items():
                w = rb.get(k)
                if k in records.TIMING_COLUMNS or v == w or (isinstance(v, float) and isinstance(w, float)
                                                               and math.isnan(v) and math.isnan(w)):
                    continue
                diff = abs(v - w) / max(abs(v), abs(w), 1e-12) if isinstance(v, float) and isinstance(w, float) \
                    else math.inf
                if diff > worst:
                    worst, where = diff, k
    return worst, where


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=4, help="cells (even: length 0.1 and IID per seed) [4]")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per cell [2]")
    parser.add_argument("--cell-cpus", type=int, default=1, help="CPUs per Ray cell [1]")
    parser.add_argument("--cell-gpus", type=float, default=0.0, help="GPUs per Ray cell (0.25: 4 on one GPU) [0]")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="the cells' device [cpu]")
    parser.add_argument("--smoke", action="store_true", help="tiny random model: checks the script in seconds")
    args = parser.parse_args()
    if args.cells < 2 or args.cells % 2 or args.rounds < 1 or args.cell_cpus < 1:
        parser.error("--cells must be an even number >= 2, --rounds and --cell-cpus >= 1")
    print(f"Machine: {machine()}, Python {platform.python_version()}")
    load_before = open("/proc/loadavg").read().split()[0]
    with tempfile.TemporaryDirectory(prefix="brs", dir="/tmp") as tmp:
        tmp = Path(tmp)
        model = MODEL
        if args.smoke:
            sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
            from conftest import make_tiny_opt

            model = str(make_tiny_opt(tmp / "tiny"))
        grid = tmp / "grid.toml"
        grid.write_text(grid_toml(model, args.cells, args.rounds, args.smoke, args.device))
        rows = []
        for label, extra in (("sequential", []), ("ray", ["--ray", "--cell-cpus", str(args.cell_cpus)])):
            wall, peak = timed_sweep(grid, tmp / label, extra)
            rows.append((label, wall, peak))
            print(f"  {label}: {wall:.1f} s", file=sys.stderr, flush=True)
        worst, column = largest_difference(tmp / "sequential", tmp / "ray")
    load_after = open("/proc/loadavg").read().split()[0]
    what = "tiny random OPT (--smoke: measures nothing)" if args.smoke else MODEL
    print(f"\n### {args.cells} cells ({what}, 4 clients, 2 per round, {args.rounds} rounds), "
          f"sequential vs local Ray with {args.cell_cpus} CPU(s) and {args.cell_gpus:g} GPU(s) a cell, "
          f"device {args.device}\n")
    print("| sweep | wall (s) | × sequential | peak RSS, process tree (GiB) |")
    print("|---|---:|---:|---:|")
    base = rows[0][1]
    for label, wall, peak in rows:
        print(f"| {label} | {wall:.1f} | {wall / base:.2f} | {peak / 2**30:.2f} |")
    print(f"\nrounds.csv, timing columns aside: largest relative difference {worst:.2g} ({column}); "
          f"load average before {load_before}, after {load_after}")


if __name__ == "__main__":
    main()
