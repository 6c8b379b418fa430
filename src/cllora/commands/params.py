"""`cllora params`: the study's communication-cost table (trainable LoRA vs all parameters, bytes)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "params", help="LoRA communication-cost table of one or more models",
        description="Trainable LoRA parameters, all parameters, their ratio and bytes per adapter "
                    "transfer, as in the study's Table 1. Counts come from the architecture on the "
                    "meta device: a directory with only config.json is enough, no weights are loaded.",
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
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cllora.errors import UserError
    from cllora.model import cost_row

    if args.rank < 1:
        raise UserError(f"--rank must be an integer >= 1, got {args.rank}")
    targets = tuple(t.strip() for t in args.targets.split(",") if t.strip())
    if not targets:
        raise UserError(f"--targets must name at least one module, got {args.targets!r}")
    rows = [cost_row(m, rank=args.rank, alpha=args.alpha, targets=targets,
                     transfer_dtype=args.transfer_dtype) for m in args.models]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print_cost_table(rows)
    return 0


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
