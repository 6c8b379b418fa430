"""Time the partitioners: the hand-written core (cllora.partition.core) vs flwr-datasets (cllora.partition.flwr).

    python benchmarks/bench_partition.py                      # 10k×100 and 100k×1000, both backends
    python benchmarks/bench_partition.py --sizes 100000x1000 --skip-flwr-length

Lengths are synthetic (log-normal, like token counts); 5 quantile length classes; alpha=0.1.
Each cell is the best of --repeat runs (flwr's length scheme runs once: it is slow). Also prints
the mean dominant-class share so the two backends' skew can be compared at equal settings.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from cllora import partition as part  # noqa: E402
from cllora.partition.flwr import flwr_partition  # noqa: E402
from cllora.partition.stats import heterogeneity_stats  # noqa: E402


def timed(fn, repeat: int):
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000x100,100000x1000", help="comma-separated TEXTSxCLIENTS")
    ap.add_argument("--alpha", type=float, default=0.1, help="Dirichlet alpha [0.1]")
    ap.add_argument("--repeat", type=int, default=3, help="runs per cell, best reported [3]")
    ap.add_argument("--skip-flwr-length", action="store_true",
                    help="skip flwr's InnerDirichletPartitioner (~25 s at 100k×1000)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    print(f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} CPUs, "
          f"alpha={args.alpha}")
    print(f"{'texts':>8} {'clients':>7} {'scheme':>8} {'backend':>7} {'seconds':>9} {'dominant':>9}")
    for spec in args.sizes.split(","):
        n, num_clients = (int(x) for x in spec.lower().split("x"))
        lengths = np.random.default_rng(0).lognormal(4.3, 0.9, n).astype(np.int64) + 1
        labels, _ = part.length_classes(lengths, 5)
        runs = [("iid", "core"), ("length", "core"), ("quantity", "core"), ("iid", "flwr")]
        runs += [] if args.skip_flwr_length else [("length", "flwr")]
        for scheme, backend in runs:
            if backend == "core":
                fn = lambda: part.make_partition(scheme, labels, num_clients, np.random.default_rng(0),  # noqa: E731
                                                 alpha=args.alpha, num_classes=5)
            else:
                fn = lambda: flwr_partition(scheme, labels, num_clients, 0, args.alpha, num_classes=5)  # noqa: E731
            repeat = 1 if (scheme, backend) == ("length", "flwr") else args.repeat
            seconds, p = timed(fn, repeat)
            share = heterogeneity_stats(p.clients, labels, 5)["mean_dominant_share"]
            print(f"{n:>8} {num_clients:>7} {scheme:>8} {backend:>7} {seconds:>9.3f} {share:>9.3f}",
                  flush=True)


if __name__ == "__main__":
    main()
