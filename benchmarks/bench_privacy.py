"""What client-level DP costs per round (issue 21), measured side by side in one run.

  python benchmarks/bench_privacy.py [--rank R] [--clients K] [--repeats N] [--run]

Server side, on smollm2-135m's q/v adapter shapes (meta device: no weights loaded; random tensors):
  fedavg ms   FedAvg's aggregation of K replies (the example-weighted mean DP replaces)
  dp ms       privacy.private_mean: clip each update to C, sum in float64, add N(0, (zC)^2 I) drawn
              from a named numpy stream, divide by the fixed denominator
Accountant (dp-accounting RDP, fixed-size sampling of K of N clients), done once before a run:
  epsilons    ε after each of R rounds (the dp_epsilon column)
  solve z     the noise multiplier for a target ε (--dp-target-epsilon)
With --run, two real runs of the embedded model (4 clients, 2 a round, 2 rounds, 20 training texts
per client), without and with DP, one after the other: seconds per round from their rounds.csv.
Prints markdown tables to paste into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench_strategies import machine, times_ms  # noqa: E402  (the sibling script: same machine line)

MODEL = "smollm2-135m"
CLIP, NOISE, DELTA = 0.5, 1.0, 1e-5


def random_states(rank: int, clients: int) -> tuple[dict, list[dict]]:
    from cllora.commands.params import meta_adapter

    gen = torch.Generator().manual_seed(0)
    shapes = {n: t.shape for n, t in meta_adapter(MODEL, rank, 16.0, ("q_proj", "v_proj")).items()}
    x = {n: torch.randn(s, generator=gen) * 0.01 for n, s in shapes.items()}
    return x, [{n: v + 0.01 * torch.randn(v.shape, generator=gen) for n, v in x.items()} for _ in range(clients)]


def median_ms(fn, repeats: int) -> float:
    return statistics.median(times_ms(fn, repeats))


def bench_server(ranks: list[int], client_counts: list[int], repeats: int) -> None:
    from cllora.aggregate import Reply, get_strategy, strategy_options
    from cllora.privacy import private_mean

    fedavg = get_strategy("fedavg")
    print(f"\nServer side of one round ({MODEL} q/v adapters, fp32; median of {repeats})\n")
    print("| rank | replies K | adapter params | fedavg ms | dp ms |\n|---:|---:|---:|---:|---:|")
    for rank in ranks:
        for k in client_counts:
            x, states = random_states(rank, k)
            replies = [Reply(s, 10.0 + i, {}, i) for i, s in enumerate(states)]
            opts = strategy_options("fedavg", {"lr": 5e-4, "clients": 20, "rank": rank, "lora_alpha": 16.0})
            server = fedavg.init_server(x, opts)
            avg = median_ms(lambda: fedavg.aggregate(x, server, replies, opts), repeats)
            rng = np.random.default_rng(0)
            dp = median_ms(lambda: private_mean(x, states, CLIP, NOISE, k, rng), repeats)
            params = sum(t.numel() for t in x.values())
            print(f"| {rank} | {k} | {params:,} | {avg:.1f} | {dp:.1f} |")


def bench_accountant(repeats: int) -> None:
    from cllora.privacy import epsilons, noise_for_epsilon

    print(f"\nAccountant (RDP, k of N without replacement, δ = {DELTA:g}; median of {repeats})\n")
    print("| clients N | per round k | rounds R | ε after every round ms | solve z for ε = 8 ms |\n"
          "|---:|---:|---:|---:|---:|")
    for n, k, rounds in ((20, 2, 5), (200, 20, 5), (1000, 100, 100)):
        eps = median_ms(lambda: epsilons(NOISE, k, n, rounds, DELTA), repeats)
        solve = median_ms(lambda: noise_for_epsilon(8.0, k, n, rounds, DELTA), max(1, repeats // 5))
        print(f"| {n} | {k} | {rounds} | {eps:.1f} | {solve:.0f} |")


def bench_runs() -> None:
    from cllora import records
    from cllora.config.settings import RunConfig
    from cllora.engine.loop import run_experiment

    base = RunConfig(model=MODEL, max_train_examples=100, max_test_examples=16, clients=4, clients_per_round=2,
                     rounds=2, local_epochs=1, rank=2, fairness_every=2, seed=0)
    print(f"\nTwo real runs ({MODEL}, 4 clients, 2 a round, 2 rounds, ~20 training texts per client, r=2), "
          "one after the other; seconds per round (rounds 1-2, mean)\n")
    print("| run | train s | eval s | overhead s | round s | whole run s |\n|---|---:|---:|---:|---:|---:|")
    for label, config in (("no DP", base), (f"DP (C = {CLIP}, z = {NOISE})", base.replace(dp_clip=CLIP, dp_noise=NOISE))):
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            run_experiment(config, Path(out), log=lambda *a, **k: None)
            whole = time.perf_counter() - start
            rows = [r for r in records.read_csv(Path(out) / "rounds.csv") if r["round"] >= 1]
        mean = {k: statistics.mean(r[k] for r in rows) for k in records.TIMING_COLUMNS}
        print(f"| {label} | {mean['train_seconds']:.2f} | {mean['eval_seconds']:.2f} | "
              f"{mean['overhead_seconds']:.3f} | {mean['round_seconds']:.2f} | {whole:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", default="2,8", help="adapter ranks for the server-side table")
    parser.add_argument("--clients", default="2,20,200", help="replies per round for the server-side table")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--run", action="store_true", help="also time two real runs, without and with DP")
    args = parser.parse_args()
    print(f"Machine: {machine()}")
    bench_server([int(r) for r in args.ranks.split(",")], [int(k) for k in args.clients.split(",")], args.repeats)
    bench_accountant(args.repeats)
    if args.run:
        bench_runs()


if __name__ == "__main__":
    main()
