"""`cllora run`: one federated LoRA experiment (config file + flag overrides) into a run directory."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from cllora.commands.flags import add_config_flags, config_overrides
from cllora.config.settings import RunConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="run one federated LoRA experiment",
        description="Federated LoRA fine-tuning under a chosen partition: sample k of N clients per "
                    "round, train LoRA adapters locally, aggregate them with the chosen strategy (FedAvg by default), and record global and per-client "
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
    """The run's config, directory and whether it resumes; a setting given (flag or config file)
    that this run would ignore is refused (cllora.config.settings.check_given)."""
    from cllora import records  # lazy: the CLI starts without any command's dependencies
    from cllora.config.load import (  # lazy: the CLI starts without any command's dependencies
        check_given,
        file_settings,
    )
    from cllora.config.settings import from_dict  # lazy: the CLI starts without any command's dependencies
    from cllora.errors import UserError  # lazy: the CLI starts without any command's dependencies

    given = {**(file_settings(args.config) if args.config else {}), **config_overrides(args)}
    if args.resume and args.overwrite:
        raise UserError(f"--resume {args.resume!r} continues a run and --overwrite replaces it; pass one "
                        "of them")
    if args.resume:
        out = Path(args.resume)
        if args.out and Path(args.out) != out:
            raise UserError(f"--out {args.out!r} and --resume {args.resume!r} name different directories")
        if not records.is_run_dir(out):
            raise UserError(f"--resume {args.resume!r}: not a cllora run directory (no config.json)")
        config = from_dict({**records.saved_config(out).to_dict(), **given})
    else:
        config = from_dict(given)
        out = Path(args.out) if args.out else Path("runs") / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    check_given(config, given)
    return config, out, bool(args.resume)


def run(args: argparse.Namespace) -> int:
    from cllora.engine.progress import RunProgress  # lazy: the CLI starts without any command's dependencies
    from cllora.runner import run as run_one  # lazy: the CLI starts without any command's dependencies

    config, out, resume = resolve(args)
    if resume and _already_done(config, out):
        return 0
    progress = RunProgress(enabled=not args.quiet)
    try:
        summary = run_one(config, out, resume=resume, overwrite=args.overwrite, progress=progress,
                          log=progress.log)
    except KeyboardInterrupt:
        _say_how_to_resume(out)
        raise
    print_summary(summary)
    print_files(Path(summary["out"]))
    return 0


def _say_how_to_resume(out: Path) -> None:
    """After Ctrl-C: the command that continues the run, where a round was saved to continue from."""
    import sys

    from cllora import records  # lazy: the CLI starts without any command's dependencies

    status, last = records.run_status(out)
    if status == "partial" and last >= 0:
        print(f"cllora: stopped after round {last}, saved in {str(out)!r}; continue it with:\n"
              f"  cllora run --resume {out}", file=sys.stderr)
    else:
        print(f"cllora: stopped before any round was saved; nothing to resume in {str(out)!r}",
              file=sys.stderr)


def print_files(out: Path) -> None:
    """Every file the run directory holds (read from disk, so the list is always whole) and the next step."""
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    folders = sorted({name.split("/", 1)[0] + "/" for name in files if "/" in name})
    top = [name for name in files if "/" not in name] + folders
    print(f"wrote {out}/: {', '.join(top)}")
    print(f"next: cllora report {out}   (report.html with the curves, tables and verdicts)")


def _already_done(config: RunConfig, out: Path) -> bool:
    """A finished run resumed without more rounds: say so and change nothing (True), after the
    same compatibility checks a resume makes."""
    from cllora import records  # lazy: the CLI starts without any command's dependencies

    records.check_run_dir(out, config, resume=True, overwrite=False)
    status, completed = records.run_status(out, config.rounds)
    if status != "done":
        return False
    rounds = f"{completed} round{'s' * (completed != 1)}"
    print(f"the run in {str(out)!r} is already complete ({rounds}); nothing to do (pass --rounds "
          f"{completed + 1} or more to continue it)")
    return True


def _number(value, spec: str, missing: str) -> str:
    return missing if value is None else format(value, spec)


def print_summary(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    # lazy: the CLI starts without any command's dependencies
    from cllora.partition.registry import uses_alpha

    skew = f" α={summary['alpha']:g}" if uses_alpha(summary["scheme"]) else ""
    t = Table(title=f"{summary['model']} · {summary['dataset']} · {summary['scheme']}{skew}",
              show_header=False)
    t.add_column(style="bold")
    t.add_column(justify="right")
    t.add_row("global test loss: round 0 → final", f"{summary['initial_test_loss']:.4f} → "
                                                   f"{summary['final_test_loss']:.4f}")
    t.add_row("best test loss (round)", f"{summary['best_test_loss']:.4f} ({summary['best_round']})")
    t.add_row("final perplexity", f"{summary['final_test_ppl']:.2f}")
    t.add_row("final fairness (variance across clients)",
              _number(summary["final_fairness_var"], ".5f", "not measured (--fairness-every 0)"))
    t.add_row("communicated", f"{summary['total_bytes'] / 1e6:.2f} MB")
    t.add_row("train / eval time", f"{summary['total_train_seconds']:.0f} s / "
                                   f"{summary['total_eval_seconds']:.0f} s")
    t.add_row("precision, device", f"{summary['precision']}, {summary['device']}")
    t.add_row("failed client updates", str(summary["failed_client_updates"]))
    Console().print(t)
