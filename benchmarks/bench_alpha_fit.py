"""Does `cllora partition --fit-alpha` recover a known Dirichlet alpha? Coverage of its 95 % interval.

    python benchmarks/bench_alpha_fit.py                 # 20 seeds, 30 clients of 20-400 texts
    python benchmarks/bench_alpha_fit.py --seeds 100 --clients 8 --sizes 10-40 --natural-only

Pure numpy, no model. Rows:
- `natural, alpha A`: clients of unequal sizes (uniform from --sizes, fresh per seed), each with its
  own class mix drawn from Dirichlet(A·1) over 5 equally large classes and its texts' classes drawn
  one by one from that mix (what a natural client of that skew looks like). The fit must cover A.
- `natural, random`: a corpus of 5 equally large classes dealt at random to clients of those sizes
  (no skew at all). The fit should say "indistinguishable from IID" (interval reaching alpha 1000).
- `length partitioner, size S`: `--scheme length` over 2,000 texts, 20 clients of S texts (100: every
  text, the default; 74: the study-natural preset's share). The partitioner rounds its Dirichlet
  targets and adds no sampling noise, and when every text is used the over-demanded classes run out
  and their share moves to other classes; both make its clients more alike than natural clients of
  the same alpha. These rows show how far that moves the fit (not a coverage target).
- `quantity partitioner`: `--scheme quantity`, 20 clients over 2,000 texts; the quantity fit
  simulates exactly this partitioner's sizes.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from cllora import partition as part  # noqa: E402
from cllora.partition import Partition  # noqa: E402
from cllora.partition.natural import fit_length_alpha, fit_quantity_alpha  # noqa: E402

CLASSES = 5


def machine() -> str:
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    return f"{cpu}, {os.cpu_count()} cores, numpy {np.__version__}, Python {platform.python_version()}, " \
           f"load {open('/proc/loadavg').read().split()[0]}"


def short(x: float) -> str:
    return f"{x:.3g}" if x < 999.5 else f"{x:.0f}"


def natural_clients(alpha: float | None, sizes: np.ndarray, rng: np.random.Generator) -> tuple[Partition, np.ndarray]:
    """Clients of `sizes` whose texts' classes are drawn from each client's Dirichlet(alpha·1) mix;
    alpha None: a corpus of equally large classes dealt at random to the clients."""
    if alpha is None:
        labels = np.repeat(np.arange(CLASSES), -(-3 * sizes.sum() // CLASSES))
        rows = rng.permutation(len(labels))[:sizes.sum()]
    else:
        labels = np.concatenate([rng.choice(CLASSES, n, p=rng.dirichlet(np.full(CLASSES, alpha))) for n in sizes])
        rows = np.arange(len(labels))
    return Partition(np.split(rows, np.cumsum(sizes)[:-1])), labels


def run_row(name: str, alpha: float | None, seeds: int, draw) -> dict:
    """Fit `seeds` partitions from draw(seed) -> (fit function, partition, labels)."""
    fits, seconds = [], []
    for seed in range(seeds):
        fit_fn, partition, labels = draw(seed)
        start = time.perf_counter()
        fits.append(fit_fn(partition, labels, CLASSES, np.random.default_rng(10_000 + seed)))
        seconds.append(time.perf_counter() - start)
    covered = [f.low <= alpha <= f.high for f in fits] if alpha is not None else [f.iid_like for f in fits]
    return {"name": name, "alpha": "random" if alpha is None else f"{alpha:g}", "seeds": seeds,
            "hit": 100 * sum(covered) / seeds, "iid": sum(f.iid_like for f in fits),
            "fitted": statistics.median(f.alpha for f in fits), "low": statistics.median(f.low for f in fits),
            "high": statistics.median(f.high for f in fits), "ms": 1000 * statistics.median(seconds)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20, help="partitions per row [20]")
    ap.add_argument("--clients", type=int, default=30, help="natural clients per partition [30]")
    ap.add_argument("--sizes", default="20-400", help="natural client sizes, uniform LOW-HIGH texts [20-400]")
    ap.add_argument("--alphas", default="0.1,1,10", help="true alphas, comma-separated [0.1,1,10]")
    ap.add_argument("--natural-only", action="store_true", help="skip the partitioners' rows")
    args = ap.parse_args()
    low, high = (int(x) for x in args.sizes.split("-"))
    alphas = [float(a) for a in args.alphas.split(",")]
    print(f"Machine: {machine()}")
    print(f"{args.seeds} seeds per row; natural: {args.clients} clients of {low}-{high} texts, {CLASSES} classes; "
          "partitioners: 20 clients over 2,000 texts")

    def natural(alpha):
        def draw(seed):
            rng = np.random.default_rng(seed)
            return (fit_length_alpha, *natural_clients(alpha, rng.integers(low, high + 1, args.clients), rng))
        return draw

    def partitioner(scheme, alpha, fit_fn, size=None):
        labels = np.random.default_rng(42).integers(0, CLASSES, 2000)
        return lambda seed: (fit_fn, part.make_partition(scheme, labels, 20, np.random.default_rng(seed), alpha=alpha,
                                                         num_classes=CLASSES, client_size=size), labels)

    rows = [run_row("natural (length fit)", a, args.seeds, natural(a)) for a in alphas + [None]]
    if not args.natural_only:
        for size in (100, 74):  # 100: every text (the default size); 74: study-natural's share
            rows += [run_row(f"length partitioner, size {size}", a, args.seeds,
                             partitioner("length", a, fit_length_alpha, None if size == 100 else size))
                     for a in alphas]
        rows += [run_row("quantity partitioner", a, args.seeds, partitioner("quantity", a, fit_quantity_alpha))
                 for a in alphas]
    print("coverage: share of seeds whose 95% interval holds the true alpha (random: says IID); "
          "medians over seeds")
    print("| clients | true α | seeds | coverage | IID verdicts | median fitted α | median interval | ms per fit |")
    print("|---|---:|---:|---:|---:|---:|---|---:|")
    for r in rows:
        print(f"| {r['name']} | {r['alpha']} | {r['seeds']} | {r['hit']:.0f} % | {r['iid']} | {short(r['fitted'])} | "
              f"{short(r['low'])} – {short(r['high'])} | {r['ms']:.0f} |")


if __name__ == "__main__":
    main()
