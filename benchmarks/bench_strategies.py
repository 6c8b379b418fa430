"""Strategy costs of issue 12, measured in one run on one machine.

  python benchmarks/bench_strategies.py [server|hooks|local|all] [--clients K] [--steps N] [--repeats R]

server  seconds of the server side of one round per strategy (downlink, aggregate, client drift)
        on smollm2-135m's r=8 q/v adapter shapes with K client replies (random tensors; shapes
        from the meta device, no weights loaded)
hooks   milliseconds the FedProx and SCAFFOLD step hooks add to one local step on the same adapter
        shapes, measured alone (proximal term forward + backward; gradient correction), fastest of R
local   seconds per local training step on smollm2-135m (r=8 q/v, AdamW, batch 8 x 128 tokens)
        with FedAvg's plain step, FedProx's proximal term and SCAFFOLD's gradient correction,
        interleaved so load drifts hit every variant alike
Prints markdown tables to paste into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from cllora.config.settings import RunConfig  # noqa: E402

MODEL = "smollm2-135m"
OPTION_VALUES = {**RunConfig().to_dict(), "lr": 5e-4, "clients": 20, "rank": 8}  # every strategy's defaults


def machine() -> str:
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads, " \
           f"Python {platform.python_version()}, load {open('/proc/loadavg').read().split()[0]}"


def adapter_shapes() -> dict[str, tuple[int, ...]]:
    import warnings

    from cllora.model import attach_lora, lora_parameters, meta_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = attach_lora(meta_model(MODEL), rank=8, alpha=16.0, targets=("q_proj", "v_proj"))
    return {n: tuple(p.shape) for n, p in lora_parameters(model).items()}


def server_round(name: str, x, server, replies, opts) -> float:
    from cllora.aggregate import client_drift, get_strategy

    strategy = get_strategy(name)
    start = time.perf_counter()
    strategy.downlink(server)
    strategy.aggregate(x, server, replies, opts)
    client_drift(x, [r.state for r in replies])
    return time.perf_counter() - start


def bench_server(clients: int, repeats: int) -> None:
    from cllora.aggregate import STRATEGIES, Reply, get_strategy, strategy_options

    gen = torch.Generator().manual_seed(0)
    shapes = adapter_shapes()
    x = {n: torch.randn(s, generator=gen) * 0.01 for n, s in shapes.items()}
    params = sum(int(np.prod(s)) for s in shapes.values())
    print(f"\nServer side of one round, {clients} replies, {params:,} adapter parameters "
          f"({len(shapes)} tensors); fastest and median of {repeats}\n")
    print("| strategy | server ms / round (min) | median | min vs fedavg |\n|---|---:|---:|---:|")
    base = None
    for name in STRATEGIES:
        strategy, opts = get_strategy(name), strategy_options(name, OPTION_VALUES)
        server = strategy.init_server(x, opts)
        replies = [Reply({n: v + 0.001 * torch.randn(v.shape, generator=gen) for n, v in x.items()}, 10 + i,
                         {n: torch.randn(v.shape, generator=gen) for n, v in strategy.uplink(x).items()}, i)
                   for i in range(clients)]
        times = [server_round(name, x, server, replies, opts) for _ in range(repeats)]
        ms = 1000 * min(times)
        base = base or ms
        print(f"| {name} | {ms:.1f} | {1000 * statistics.median(times):.1f} | {ms / base:.2f}x |")


def times_ms(fn, repeats: int) -> list[float]:
    """Milliseconds of each of `repeats` calls of fn (bench_aggregation uses it too)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - start))
    return times


def bench_hooks(repeats: int) -> None:
    from cllora.aggregate import ClientView, get_strategy, strategy_options

    gen = torch.Generator().manual_seed(0)
    x = {n: torch.randn(s, generator=gen) * 0.01 for n, s in adapter_shapes().items()}
    params = {n: torch.nn.Parameter(v + 0.001) for n, v in x.items()}
    prox = get_strategy("fedprox").local(ClientView(x, {}, {}, strategy_options("fedprox", OPTION_VALUES)))
    scaffold = get_strategy("scaffold")
    opts = strategy_options("scaffold", OPTION_VALUES)
    plan = scaffold.local(ClientView(x, scaffold.downlink(scaffold.init_server(x, opts)), {}, opts))
    for p in params.values():
        p.grad = torch.zeros_like(p)
    prox_ms = min(times_ms(lambda: prox.loss_term(params).backward(), repeats))
    scaffold_ms = min(times_ms(lambda: plan.grad_hook(params), repeats))
    print(f"\nStep hooks alone on {len(params)} adapter tensors ({sum(p.numel() for p in params.values()):,} "
          f"parameters), fastest of {repeats}\n")
    print(f"| hook | ms / step |\n|---|---:|\n| fedprox: (mu/2)||theta - theta_g||^2, forward + backward | "
          f"{prox_ms:.2f} |\n| scaffold: grad += c - c_i | {scaffold_ms:.2f} |")


def bench_local(steps: int, repeats: int) -> None:
    from cllora.aggregate import ClientView, get_strategy, strategy_options
    from cllora.model import attach_lora, get_adapter_state, load_model, lora_parameters, set_adapter_state
    from cllora.train import Batch, StepHooks, train_local

    torch.manual_seed(0)
    model = attach_lora(load_model(MODEL, "cpu", "fp32"), 8, 16.0, 0.0, ("q_proj", "v_proj"))
    start_state = get_adapter_state(model)
    named = lora_parameters(model)
    gen = torch.Generator().manual_seed(1)
    batches = [Batch(torch.randint(10, 40000, (8, 128), generator=gen), torch.ones(8, 128, dtype=torch.long),
                     np.arange(8)) for _ in range(steps)]
    seconds: dict[str, list[float]] = {"fedavg": [], "fedprox": [], "scaffold": []}
    for _ in range(repeats):
        for name in seconds:
            strategy, opts = get_strategy(name), strategy_options(name, OPTION_VALUES)
            downlink = strategy.downlink(strategy.init_server(start_state, opts))
            plan = strategy.local(ClientView(start_state, downlink, {}, opts))
            set_adapter_state(model, plan.start)
            result = train_local(model, list(named.values()), lambda e: batches, 1, "adamw", 5e-4,
                                 torch.device("cpu"), hooks=StepHooks(*plan.bind(named)))
            seconds[name].append(result.seconds / result.steps)
    print(f"\nLocal step, {MODEL} fp32, r=8 q/v, AdamW, batch 8 x 128; fastest of {repeats} interleaved "
          f"runs of {steps} steps\n")
    print("| strategy | s / step | vs fedavg |\n|---|---:|---:|")
    base = min(seconds["fedavg"])
    for name, values_ in seconds.items():
        print(f"| {name} | {min(values_):.3f} | {min(values_) / base:.3f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", nargs="?", default="all", choices=("server", "hooks", "local", "all"))
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"Machine: {machine()}")
    if args.what in ("server", "all"):
        bench_server(args.clients, max(args.repeats, 10))
    if args.what in ("hooks", "all"):
        bench_hooks(max(args.repeats, 30))
    if args.what in ("local", "all"):
        bench_local(args.steps, args.repeats)


if __name__ == "__main__":
    main()
