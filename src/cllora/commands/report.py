"""`cllora report DIR`: a self-contained HTML report (and PNG/SVG figures) of a run or a sweep."""

from __future__ import annotations

import argparse

from cllora.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="write report.html and figures of a run or a sweep",
        description="Read the run directories at or under DIR (one run, a sweep, or a folder of "
                    "sweeps) and write DIR/report.html — one self-contained file, figures embedded, "
                    "no network — DIR/claims.json and every figure as PNG and SVG in DIR/figures/: the "
                    "communication cost table, global test loss per round per model (one curve per α "
                    "and IID, mean with a 95 % band over seeds), loss per length class (length skew vs "
                    "IID), fairness per round, per-client local curves (α vs IID), the partition of "
                    "every run, final/best-loss tables, strategies side by side (a table, and loss, aggregation "
                    "error and client drift per round), and the study's claims, each with its effect, "
                    "95 % interval (over seeds, or a paired bootstrap over test texts), number of seeds "
                    "and a verdict: supported, contradicted or inconclusive.",
        epilog="Examples:\n  cllora report sweeps/study-length-quick\n  cllora report runs/20261124-101500\n"
               "  cllora report sweeps            # several sweeps together (e.g. length + quantity)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", metavar="DIR", help="a run directory, a sweep directory, or a folder holding them")
    p.add_argument("--title", metavar="TEXT", default=None,
                   help="the report's title (default: the sweep's name, else the sweeps it holds)")
    p.add_argument("--quiet", action="store_true", help="print only the report's path")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cllora.report import write_report  # lazy: the CLI starts without any command's dependencies

    log = (lambda m: None) if args.quiet else (lambda m: print(m))
    if args.title is not None and not args.title.strip():
        raise UserError("--title must be a non-empty text, got an empty one")
    path = write_report(args.dir, log=log, title=args.title)
    print(f"report: {path}")
    return 0
