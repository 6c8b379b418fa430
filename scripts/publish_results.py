"""Copy the small files a report needs from finished sweep directories into results/ (no adapters,
checkpoints or figures), so `cllora report results/` regenerates every published number.

    python scripts/publish_results.py /path/to/sweep-dir [...] [--to results]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

# split_losses.npz: the report recomputes fairness from it; run.log: when and where each run ran
RUN_FILES = ("config.json", "partition.json", "rounds.csv", "clients.csv", "summary.json", "test_losses.npz",
             "split_losses.npz", "run.log")
SWEEP_FILES = ("index.json", "index.csv")


def publish(sweep: Path, target: Path) -> int:
    """Copy one sweep's index and its runs' small files to target/<sweep name>; returns runs copied."""
    out = target / sweep.name
    copied = 0
    for name in SWEEP_FILES:
        if (sweep / name).is_file():
            out.mkdir(parents=True, exist_ok=True)
            shutil.copy2(sweep / name, out / name)
    for config in sorted(sweep.rglob("config.json")):
        run = config.parent
        if not (run / "summary.json").is_file():
            print(f"skipped {run}: not finished (no summary.json)", file=sys.stderr)
            continue
        dest = out / run.relative_to(sweep)
        dest.mkdir(parents=True, exist_ok=True)
        for name in RUN_FILES:
            if (run / name).is_file():
                shutil.copy2(run / name, dest / name)
        copied += 1
    return copied


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", nargs="+", type=Path, help="finished sweep directories")
    parser.add_argument("--to", type=Path, default=Path("results"), help="where to publish (default: results)")
    args = parser.parse_args()
    for sweep in args.sweeps:
        if not sweep.is_dir():
            print(f"error: {sweep} is not a directory", file=sys.stderr)
            return 2
        print(f"{sweep.name}: {publish(sweep, args.to)} runs -> {args.to / sweep.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
