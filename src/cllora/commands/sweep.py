"""`cllora sweep`: run a grid of experiments (a grid file or a built-in preset of the study) into one folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from cllora.commands.flags import add_config_flags, config_overrides


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep", help="run a grid of experiments (the study's experiments in one command)",
        description="Run the cartesian grid of a GRID.toml ([run] fixed settings, [grid] lists of "
                    "values, [per_model.<model>] settings per model, [quick] a faster variant) or of a "
                    "built-in preset: one run directory per cell plus index.json/index.csv. Finished "
                    "cells are skipped and interrupted ones resumed, so rerunning the same command "
                    "continues a sweep. Each cell runs on its engine (engine = \"flower-sim\" goes "
                    "through Flower's simulation engine); in-process cells load each base model once "
                    "per sweep. A report (report.html and figures/) is written at the end.",
        epilog="Examples:\n"
               "  cllora sweep --preset study-length --quick          # ~20 min on 2 CPU cores\n"
               "  cllora sweep --preset study-length --dry-run        # list the cells\n"
               "  cllora sweep --preset study-quantity --grid seed=0,1,2\n"
               "  cllora sweep --preset study-length --grid model=smollm2-135m,gemma3-270m\n"
               "  cllora sweep --config grid.toml --out sweeps/mine --rounds 5\n"
               "  cllora sweep --list-presets",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("what to run")
    src.add_argument("--config", metavar="GRID.toml", help="grid file: [run], [grid], [per_model.<model>], [quick]")
    src.add_argument("--preset", metavar="NAME", help="built-in grid: study-length, study-quantity, study-local")
    src.add_argument("--quick", action="store_true",
                     help="apply the grid's [quick] variant (fewer rounds and examples; each built-in "
                          "quick preset finishes on 2 CPU cores in well under an hour)")
    src.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                     help="replace or add a grid axis, e.g. --grid seed=0,1,2 or "
                          "--grid model=smollm2-135m,gemma3-270m (repeatable)")
    src.add_argument("--list-presets", action="store_true", help="list the built-in presets and exit")
    out = p.add_argument_group("output")
    out.add_argument("--out", metavar="DIR", help="sweep folder [sweeps/<grid name>]; rerun to continue")
    out.add_argument("--dry-run", action="store_true", help="list the cells and their status; run nothing")
    out.add_argument("--no-report", action="store_true", help="do not write report.html at the end")
    out.add_argument("--quiet", action="store_true", help="no progress display")
    add_config_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cllora import grid, sweep, sweep_index
    from cllora.errors import RunFailed

    if args.list_presets:
        names = sweep.preset_names()
        for name in names:
            first_line = (sweep.preset_description(name).splitlines() or [""])[0]
            print(f"{name:{max(map(len, names))}s}  {first_line}")
        return 0
    spec = sweep.load_spec(args.config, args.preset, args.quick)
    grid_overrides = dict(grid.parse_grid_flag(g) for g in args.grid)
    cells = grid.expand(spec, config_overrides(args), grid_overrides)
    root = Path(args.out) if args.out else Path("sweeps") / spec.name
    if args.dry_run:
        print(f"sweep {spec.name} ({spec.source}): {len(cells)} cells in {root}")
        print(sweep_index.format_table(sweep_index.describe_cells(cells, root)))
        return 0
    from rich.console import Console

    console = Console(stderr=True)
    say = (lambda m: None) if args.quiet else (lambda m: console.print(m, highlight=False))
    failed: RunFailed | None = None
    try:
        outcome = sweep.run_sweep(spec, cells, root, progress=not args.quiet, console=console, log=say)
        say(f"sweep {spec.name}: {outcome.ran} cell(s) run, {outcome.skipped} already done, "
            f"in {sweep.duration(outcome.seconds)}; index: {root / 'index.csv'}")
    except RunFailed as exc:
        failed = exc
    if not args.no_report:
        from cllora.report import write_report

        path = write_report(root, log=say)
        print(f"report: {path}")
    if failed is not None:
        raise failed
    return 0
