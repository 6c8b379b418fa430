"""The `cllora` command: one subcommand per module under cllora.commands; user mistakes exit 2."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from cllora import __version__
from cllora.errors import RunFailed, UserError

# Each module exposes register(subparsers) and sets `func` on its parser. Heavy imports
# (torch, transformers) happen inside the command functions so `--help` stays fast.
COMMAND_MODULES = ("info", "params", "partition", "run", "sweep", "report", "flower_app", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cllora",
        description="Measure how non-IID text (length skew, quantity skew) affects federated "
                    "LoRA fine-tuning of causal language models.",
        epilog="Run `cllora COMMAND --help` for the flags of one command.",
    )
    parser.add_argument("--version", action="version", version=f"cllora {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"cllora.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:  # a user mistake: one sentence, exit 2 (any other error is a bug: traceback)
        if os.environ.get("CLLORA_DEBUG"):
            raise
        from cllora.commands.flags import spoken  # the settings named as the user gave them

        print(f"cllora: error: {spoken(str(exc), args)}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file or folder the system refused (full disk, permissions): one sentence
        if exc.filename is None or os.environ.get("CLLORA_DEBUG"):
            raise
        print(f"cllora: error: {exc.filename!s}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except RunFailed as exc:
        print(f"cllora: run failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cllora: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
