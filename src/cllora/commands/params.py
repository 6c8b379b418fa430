"""`cllora params`: the study's communication-cost table (trainable LoRA vs all parameters, bytes),
and the bytes one sampled client sends and receives per round under a federated strategy."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "params", help="LoRA communication-cost table of one or more models",
        description="Trainable LoRA parameters, all parameters, their ratio and bytes per adapter "
                    "transfer, as in the study's Table 1. Counts come from the architecture on the "
                    "meta device, built from the model's config.json alone: a directory with only "
                    "config.json is enough. The OPT sizes and smollm2-135m ship their configs (no "
                    "weights read, under a few seconds); gemma3-270m and hub models need theirs first: "
                    "gemma3-270m's GGUF is converted once (about a minute on 2 CPU cores), a hub "
                    "model's config is downloaded (network).",
        epilog="Example: cllora params facebook/opt-125m facebook/opt-350m facebook/opt-1.3b --rank 2")
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help="embedded name (smollm2-135m, gemma3-270m), hub name (facebook/opt-* work "
                        "offline from bundled configs), or a local directory with config.json")
    p.add_argument("--rank", type=int, default=2, help="LoRA rank r (default 2, as in the study's table)")
    p.add_argument("--alpha", type=float, default=16.0, help="LoRA alpha (does not change counts; default 16)")
    p.add_argument("--targets", default="q_proj,v_proj",
                   help="comma-separated module names to adapt (default q_proj,v_proj)")
    p.add_argument("--transfer-dtype", choices=("fp32", "bf16", "fp16"), default="fp32",
                   help="dtype for the second bytes column (the first is always fp32, 4 B/param)")
    p.add_argument("--strategy", metavar="NAME",
                   help="also show the uplink/downlink bytes per sampled client and round under this "
                        "federated strategy (fedavg, scaffold, ffa-lora, flora, fedex-lora, ...)")
    p.add_argument("--clients-per-round", type=int, default=2, metavar="K",
                   help="clients per round (FLoRA's downlink stacks all of them; default 2)")
    p.add_argument("--client-ranks", metavar="R1,R2,..",
                   help="heterogeneous ranks, one per client, each in [1, rank] (as run's --client-ranks): "
                        "the bytes per round are shown for a sampled client of each rank (FLoRA's "
                        "downlink: after K clients of that rank)")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cllora.errors import UserError  # lazy: the CLI starts without any command's dependencies
    from cllora.model import cost_row  # lazy: the CLI starts without any command's dependencies

    if args.rank < 1:
        raise UserError(f"--rank must be an integer >= 1, got {args.rank}")
    targets = tuple(t.strip() for t in args.targets.split(",") if t.strip())
    if not targets:
        raise UserError(f"--targets must name at least one module, got {args.targets!r}")
    ranks = _ranks(args)
    rows = [cost_row(m, rank=args.rank, alpha=args.alpha, targets=targets,
                     transfer_dtype=args.transfer_dtype) for m in args.models]
    if args.strategy is not None:
        for row in rows:
            adapter = meta_adapter(row["model"], args.rank, args.alpha, targets)
            row["strategy"] = args.strategy
            by_rank = {r: strategy_round_bytes(args.strategy, adapter, args.rank, args.alpha,
                                               args.clients_per_round, r) for r in sorted(set(ranks))}
            if args.client_ranks is None:
                row["bytes_up_per_round"], row["bytes_down_per_round"] = by_rank[args.rank]
            else:
                row["client_ranks"] = ranks
                row["bytes_per_round_by_rank"] = {str(r): {"up": up, "down": down}
                                                  for r, (up, down) in by_rank.items()}
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print_cost_table(rows)
    return 0


def _check_strategy(name: str, clients_per_round: int) -> None:
    from cllora.aggregate import STRATEGIES  # lazy: the CLI starts without any command's dependencies
    from cllora.errors import UserError  # lazy: the CLI starts without any command's dependencies

    if name not in STRATEGIES:
        raise UserError(f"--strategy must be one of {', '.join(STRATEGIES)}; got {name!r}")
    if clients_per_round < 1:
        raise UserError(f"--clients-per-round must be an integer >= 1, got {clients_per_round}")


def _ranks(args: argparse.Namespace) -> list[int]:
    """Every client's rank (--client-ranks, checked as a run checks it), or [--rank]; the strategy
    checked too."""
    from cllora.errors import UserError  # lazy: the CLI starts without any command's dependencies
    from cllora.ranks import BY_SIZE, client_ranks  # lazy: the CLI starts without any command's dependencies

    if args.client_ranks is None:
        if args.strategy is not None:
            _check_strategy(args.strategy, args.clients_per_round)
        return [args.rank]
    if args.strategy is None:
        raise UserError("--client-ranks changes the bytes per round only: add --strategy (e.g. fedavg)")
    _check_strategy(args.strategy, args.clients_per_round)
    if args.client_ranks.startswith(BY_SIZE):
        raise UserError(f"--client-ranks {args.client_ranks!r} ranks clients by their size, which cllora "
                        "params does not know; give one rank per client (e.g. 2,4,8)")
    return client_ranks(args.client_ranks, args.rank, len(args.client_ranks.split(",")))


def meta_adapter(name: str, rank: int, alpha: float, targets: tuple[str, ...]) -> dict:
    """The model's LoRA tensors on the meta device: names and shapes, no memory."""
    import warnings

    from cllora.model import (  # lazy: the CLI starts without any command's dependencies
        attach_lora,
        lora_parameters,
        meta_model,
    )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = attach_lora(meta_model(name), rank=rank, alpha=alpha, targets=targets)
    return {n: p.detach() for n, p in lora_parameters(model).items()}


def strategy_round_bytes(name: str, adapter: dict, rank: int, alpha: float, clients_per_round: int,
                         client_rank: int | None = None) -> tuple[int, int]:
    """(uplink, downlink) fp32 bytes of one sampled client (of `client_rank`, default `rank`) in a
    round after the first, counted by the engine's function (cllora.aggregate.traffic): after one
    server step on `clients_per_round` replies of that rank. Shapes only: run on meta tensors."""
    from cllora.aggregate import (  # lazy: the CLI starts without any command's dependencies
        get_strategy,
        strategy_options,
    )
    from cllora.aggregate.traffic import (  # lazy: the CLI starts without any command's dependencies
        simulated_round_bytes,
    )
    from cllora.config.settings import RunConfig  # lazy: the CLI starts without any command's dependencies

    options = strategy_options(name, {**RunConfig().to_dict(), "rank": rank, "lora_alpha": alpha})
    client_rank = rank if client_rank is None else client_rank
    return simulated_round_bytes(get_strategy(name), adapter, options, [client_rank],
                                 [client_rank] * clients_per_round)


def print_cost_table(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    dtype = rows[0]["transfer_dtype"] if rows else "fp32"
    table = Table(title=f"LoRA communication cost (r={rows[0]['rank']}, targets {','.join(rows[0]['targets'])})")
    table.add_column("Model", no_wrap=True)
    for col in ("Trainable", "All params", "Ratio", "MB/transfer fp32"):
        table.add_column(col, justify="right", no_wrap=True)
    if dtype != "fp32":
        table.add_column(f"MB/transfer {dtype}", justify="right", no_wrap=True)
    for r in rows:
        cells = [r["model"], f"{r['trainable_params']:,}", f"{r['total_params']:,}",
                 f"{100 * r['ratio']:.4f} %", f"{r['bytes_per_transfer'] / 1e6:.3f}"]
        if dtype != "fp32":
            cells.append(f"{r['bytes_per_transfer_in_dtype'] / 1e6:.3f}")
        table.add_row(*cells)
    Console().print(table)
    if rows and rows[0].get("strategy"):
        print_round_table(rows)


def print_round_table(rows: list[dict]) -> None:
    """Per sampled client and round under the chosen strategy, beside one FedAvg transfer."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Bytes per sampled client per round, strategy {rows[0]['strategy']} (fp32)")
    table.add_column("Model", no_wrap=True)
    for col in ("MB up", "MB down", "up vs FedAvg", "down vs FedAvg"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in rows:
        fedavg = r["bytes_per_transfer"]
        by_rank = r.get("bytes_per_round_by_rank") or {"": {"up": r["bytes_up_per_round"],
                                                            "down": r["bytes_down_per_round"]}}
        for rank, b in by_rank.items():
            table.add_row(r["model"] + (f", client rank {rank}" if rank else ""), f"{b['up'] / 1e6:.3f}",
                          f"{b['down'] / 1e6:.3f}", f"{b['up'] / fedavg:.2f}x", f"{b['down'] / fedavg:.2f}x")
    Console().print(table)
