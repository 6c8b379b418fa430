"""Calibration of cllora's verdicts on simulated data (cllora.analysis.calibration): the share of
false verdicts on null data at 1, 2, 3, 5 and 10 seeds, what the test-text interval alone would
have decided, and the power on true effects, for the training noise the null experiment measured.

    python benchmarks/bench_calibration.py [--train-sd 0.01] [--reps 4000]
"""

from __future__ import annotations

import argparse

import numpy as np

from cllora.analysis.calibration import TEXT_SD, TRAIN_SD, verdict_rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-sd", type=float, default=TRAIN_SD, help="training noise per run, nats")
    parser.add_argument("--text-sd", type=float, default=TEXT_SD, help="per-text interaction noise, nats")
    parser.add_argument("--reps", type=int, default=4000, help="simulated sweeps per cell")
    parser.add_argument("--effects", default="0.005,0.015,0.03", help="true effects for the power rows")
    args = parser.parse_args()
    noise = {"train_sd": args.train_sd, "text_sd": args.text_sd}
    seeds = (1, 2, 3, 5, 10)
    print(f"simulated sweeps: 64 test texts a seed, training sd {args.train_sd} nats per run, "
          f"text sd {args.text_sd}; {args.reps} sweeps per cell")
    print("| seeds | " + " | ".join(map(str, seeds)) + " |")
    print("|---|" + "---:|" * len(seeds))
    null = [verdict_rates(n, args.reps, np.random.default_rng(n), **noise) for n in seeds]
    print("| false verdicts on null data | " + " | ".join(f"{r['decided']:.1%}" for r in null) + " |")
    print("| test-text interval alone would decide | " +
          " | ".join(f"{r['text_decided']:.1%}" if n < 3 else "—" for n, r in zip(seeds, null)) + " |")
    for effect in (float(x) for x in args.effects.split(",")):
        power = [verdict_rates(n, max(args.reps // 4, 200), np.random.default_rng(100 + n), effect=effect,
                               **noise)["supported"] for n in seeds]
        print(f"| power, true effect {effect:g} nats | " + " | ".join(f"{p:.0%}" for p in power) + " |")


if __name__ == "__main__":
    main()
