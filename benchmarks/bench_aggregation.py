"""Costs of the LoRA-aware aggregation methods (issue 13) against FedAvg, measured in one run.

  python benchmarks/bench_aggregation.py [--rank R] [--clients K] [--repeats N] [--step]

On smollm2-135m's q/v adapter shapes (meta device: no weights loaded; random tensors), per method:
  server ms   the strategy's server step (downlink + aggregate) over K replies
  merge ms    FLoRA/FedEx-LoRA: adding the round's deltas to the running total and recomputing the
              merged base weights (what the engine does to the shared base model)
  error ms    the aggregation error of the K adapters (rank space; every strategy pays it), with
              the dense d×k computation beside it for comparison
  bytes       uplink / downlink per sampled client per round (steady state, fp32)
  memory MB   what the method keeps beyond FedAvg: base originals + running total (merging
              methods), server state (FLoRA's stack, FedEx-LoRA's residual)
With --step, one fp32 local training step (batch 8 x 128) is timed as the yardstick of a round.
Prints markdown tables to paste into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from bench_strategies import machine, times_ms  # noqa: E402  (the sibling script: same machine line)

MODEL = "smollm2-135m"
METHODS = ("fedavg", "ffa-lora", "flora", "fedex-lora", "fedsa-lora")


def random_states(rank: int, clients: int) -> tuple[dict, list[dict]]:
    from cllora.commands.params import meta_adapter

    gen = torch.Generator().manual_seed(0)
    shapes = {n: t.shape for n, t in meta_adapter(MODEL, rank, 16.0, ("q_proj", "v_proj")).items()}
    x = {n: torch.randn(s, generator=gen) * 0.01 for n, s in shapes.items()}
    replies = [{n: v + 0.001 * torch.randn(v.shape, generator=gen) for n, v in x.items()}
               for _ in range(clients)]
    return x, replies


def median_ms(fn, repeats: int) -> float:
    return statistics.median(times_ms(fn, repeats))


def mb(state: dict) -> float:
    return sum(t.numel() * t.element_size() for t in state.values()) / 1e6


def bench_methods(rank: int, clients: int, repeats: int) -> None:
    from cllora.aggregate import Reply, get_strategy, strategy_options
    from cllora.aggregate.lora_math import add_deltas, merged_base

    x, states = random_states(rank, clients)
    replies = [Reply(s, 10.0 + i, {}, i) for i, s in enumerate(states)]
    values = {"lr": 5e-4, "clients": 20, "rank": rank, "lora_alpha": 16.0}
    print(f"\nServer side of one round, {MODEL} r={rank} q/v, {clients} replies; median of {repeats}\n")
    print("| method | server ms | merge ms | up MB | down MB | extra memory MB |\n|---|---:|---:|---:|---:|---:|")
    for name in METHODS:
        strategy, opts = get_strategy(name), strategy_options(name, values)
        server = strategy.init_server(x, opts)
        step = strategy.aggregate(x, server, replies, opts)
        server_ms = median_ms(lambda: (strategy.downlink(server), strategy.aggregate(x, server, replies, opts)),
                              repeats)
        extra_mb, merge_ms = mb(step.server_state), 0.0
        if step.base_delta:
            originals = {n: torch.randn(d.shape) for n, d in step.base_delta.items()}
            total = add_deltas(None, step.base_delta)
            merge_ms = median_ms(lambda: merged_base(originals, add_deltas(total, step.base_delta)), repeats)
            extra_mb += 2 * mb(originals)  # originals + running total
        shared = sum(t.numel() * 4 for n, t in x.items() if strategy.shares(n))
        down = shared + sum(t.numel() * 4 for t in strategy.downlink(step.server_state).values())
        print(f"| {name} | {server_ms:.1f} | {merge_ms:.1f} | {shared / 1e6:.3f} | {down / 1e6:.3f} | "
              f"{extra_mb:.1f} |")


def bench_error(rank: int, clients: int, repeats: int) -> None:
    from cllora.aggregate.error import aggregation_error

    x, states = random_states(rank, clients)
    weights = [10.0 + i for i in range(clients)]
    fast = median_ms(lambda: aggregation_error(states, weights), repeats)
    dense = median_ms(lambda: aggregation_error(states, weights, dense=True), repeats)
    print(f"\nAggregation error of {clients} adapters, r={rank}: rank space {fast:.1f} ms, "
          f"dense d×k {dense:.1f} ms ({dense / fast:.1f}x)")


def bench_step() -> None:
    import numpy as np

    from cllora.model import attach_lora, load_model, lora_parameters
    from cllora.train import Batch, train_local

    torch.manual_seed(0)
    model = attach_lora(load_model(MODEL, "cpu", "fp32"), 8, 16.0, 0.0, ("q_proj", "v_proj"))
    gen = torch.Generator().manual_seed(1)
    batches = [Batch(torch.randint(10, 40000, (8, 128), generator=gen), torch.ones(8, 128, dtype=torch.long),
                     np.arange(8)) for _ in range(3)]
    result = train_local(model, list(lora_parameters(model).values()), lambda e: batches, 1, "adamw", 5e-4,
                         torch.device("cpu"))
    print(f"\nOne local step ({MODEL} fp32, r=8 q/v, batch 8 x 128): {result.seconds / result.steps:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--step", action="store_true", help="also time one local training step")
    args = parser.parse_args()
    print(f"Machine: {machine()}")
    bench_methods(args.rank, args.clients, args.repeats)
    bench_error(args.rank, args.clients, args.repeats)
    if args.step:
        bench_step()


if __name__ == "__main__":
    main()
