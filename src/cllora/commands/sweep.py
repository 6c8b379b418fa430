"""`cllora sweep`: run a grid of experiments (a grid file or a built-in preset of the study) into one folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from cllora.commands.flags import add_config_flags, config_overrides


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep", help="run a grid of experiments (the study's experiments in one command)",
        description="Run the cartesian grid of a GRID.toml ([run] fixed settings, [grid] lists of "
                    "values, [per_model.<model>] settings per model, [quick] and [study] patches for "
                    "other training budgets) or of a "
                    "built-in preset: one run directory per cell plus index.json/index.csv. Finished "
                    "cells are skipped and interrupted ones resumed, so rerunning the same command "
                    "continues a sweep. Each cell runs on its engine (engine = \"flower-sim\" goes "
                    "through Flower's simulation engine); in-process cells load each base model once "
                    "per sweep. A report (report.html and figures/) is written at the end.",
        epilog="Examples:\n"
               "  cllora sweep --preset study-length --quick          # ~20 min on 2 CPU cores\n"
               "  cllora sweep --preset study-length --budget study --dry-run   # the study's 10 rounds x 5 epochs\n"
               "  cllora sweep --preset study-length --dry-run        # list the cells\n"
               "  cllora sweep --preset study-quantity --grid seed=0,1,2\n"
               "  cllora sweep --preset study-length --grid model=smollm2-135m,gemma3-270m\n"
               "  cllora sweep --config grid.toml --out sweeps/mine --rounds 5\n"
               "  cllora sweep --preset study-length --quick --ray   # cells in parallel, local Ray\n"
               "  cllora sweep --preset study-length --ray auto --cell-gpus 0.25   # a running Ray cluster\n"
               "  cllora sweep --list-presets",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("what to run")
    src.add_argument("--config", metavar="GRID.toml",
                     help="grid file: [run], [grid], [per_model.<model>], [quick], [study]")
    src.add_argument("--preset", metavar="NAME", help="a built-in grid by name (--list-presets lists them)")
    src.add_argument("--budget", choices=("full", "quick", "study"), default=None,
                     help="training budget [full]: full = the grid as written (the study's scale: days "
                          "on a CPU, a GPU job); quick = its [quick] patch (5-6 rounds of 1-2 local "
                          "epochs, under an hour on 2 CPU cores, the loss still falling); study = its "
                          "[study] patch (the study's rounds, local epochs and clients on fewer texts "
                          "per client, each preset sized to <= 3 h on 2 CPU cores; --list-presets "
                          "shows the estimates)")
    src.add_argument("--quick", action="store_true", help="the same as --budget quick")
    src.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                     help="replace or add a grid axis, e.g. --grid seed=0,1,2 or "
                          "--grid model=smollm2-135m,gemma3-270m (repeatable)")
    src.add_argument("--list-presets", action="store_true", help="list the built-in presets and exit")
    out = p.add_argument_group("output")
    out.add_argument("--out", metavar="DIR", help="sweep folder [sweeps/<grid name>]; rerun to continue")
    out.add_argument("--plan", metavar="PLAN.toml",
                     help="the sweep's plan (seeds, claims, headlines, families, planning sd): copied to "
                          "the sweep folder as plan.toml before the first cell runs; refused when the "
                          "folder holds a different plan or runs without one [no plan]")
    out.add_argument("--dry-run", action="store_true", help="list the cells and their status; run nothing")
    out.add_argument("--no-report", action="store_true", help="do not write report.html at the end")
    out.add_argument("--quiet", action="store_true", help="no progress display")
    par = p.add_argument_group("in parallel on Ray (cllora[flower] installs Ray)")
    par.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                     help="run cells in parallel as Ray actors: alone, on a local Ray instance started "
                          "for the sweep; with ADDRESS (host:port, ray://host:port or auto), on a "
                          "running cluster, whose nodes must all see --out at the same path")
    par.add_argument("--cell-cpus", type=float, metavar="N",
                     help="CPUs each cell declares to Ray and uses as torch threads [1]")
    par.add_argument("--cell-gpus", type=float, metavar="N",
                     help="GPUs each cell declares; a fraction (0.25) shares a GPU between cells "
                          "[1 where the cluster has GPUs and the cells' device is not cpu, else 0]")
    add_config_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cllora.errors import RunFailed  # lazy: the CLI starts without any command's dependencies
    from cllora.sweep import grid  # lazy: the CLI starts without any command's dependencies
    from cllora.sweep import run as sweep  # lazy: the CLI starts without any command's dependencies

    if args.list_presets:
        _list_presets(sweep.preset_names())
        return 0
    spec = sweep.load_spec(args.config, args.preset, budget=_budget(args))
    grid_overrides = dict(grid.parse_grid_flag(g) for g in args.grid)
    cells = grid.expand(spec, config_overrides(args), grid_overrides)
    root = Path(args.out) if args.out else Path("sweeps") / spec.name
    _check_root(root, "--out" if args.out else "the sweep folder")
    ray_options = _ray_options(args)
    _check_cells(cells)
    if args.plan:
        from cllora.analysis.plans import install_plan, read_plan  # lazy, as above

        if args.dry_run:  # checked, not copied: a dry run writes nothing
            read_plan(Path(args.plan))
        else:
            plan = install_plan(Path(args.plan), root, spec.name)
            print(f"plan: {root / 'plan.toml'} (seeds {', '.join(map(str, plan.seeds))})")
    if args.dry_run:
        _dry_run(spec, cells, root, ray_options)
        return 0
    from rich.console import Console

    console = Console(stderr=True)
    say = (lambda m: None) if args.quiet else (lambda m: console.print(m, highlight=False, soft_wrap=True))
    failed: RunFailed | None = None
    try:
        if ray_options is not None:
            # lazy: the CLI starts without any command's dependencies
            from cllora.sweep.on_ray import run_sweep_ray

            outcome = run_sweep_ray(spec, cells, root, ray_options, console=None if args.quiet else console,
                                    log=say)
        else:
            outcome = sweep.run_sweep(spec, cells, root, progress=not args.quiet, console=console, log=say)
        say(f"sweep {spec.name}: {outcome.ran} cell(s) run, {outcome.skipped} already done, "
            f"in {sweep.duration(outcome.seconds)}; index: {root / 'index.csv'}")
    except RunFailed as exc:
        failed = exc
    if not args.no_report:
        from cllora.report import write_report  # lazy: the CLI starts without any command's dependencies

        path = write_report(root, log=say)
        print(f"report: {path}")
    if failed is not None:
        raise failed
    return 0


def _budget(args: argparse.Namespace) -> str:
    from cllora.errors import UserError  # lazy: the CLI starts without any command's dependencies

    if args.quick and args.budget not in (None, "quick"):
        raise UserError(f"--quick means --budget quick; it cannot go with --budget {args.budget}")
    return "quick" if args.quick else (args.budget or "full")


def _list_presets(names: list[str]) -> None:
    """Each preset's first description line, and the cell time of each budget it offers (the
    dry-run estimate at the default rate: a 2-core CPU; a GPU takes much less)."""
    from cllora.sweep import estimate, grid  # lazy: the CLI starts without any command's dependencies
    from cllora.sweep import run as sweep  # lazy: the CLI starts without any command's dependencies

    width = max(map(len, names))
    for name in names:
        first_line = (sweep.preset_description(name).splitlines() or [""])[0]
        print(f"{name:{width}s}  {first_line}")
        data = sweep.load_toml(sweep.preset_path(name))
        sizes = []
        for budget in grid.budgets_of(data):
            cells = grid.expand(grid.parse_spec(data, f"preset {name!r}", name, budget=budget))
            tflop = [estimate.cell_tflop(c) for c in cells]  # nothing run yet: the default rate
            hours = sum(t for t in tflop if t is not None) * estimate.DEFAULT_SECONDS_PER_TFLOP / 3600
            sizes.append(f"{budget}: {len(cells)} cells ~{hours:.1f} h" if None not in tflop
                         else f"{budget}: {len(cells)} cells")
        print(f"{'':{width}s}  budgets (2-core CPU estimate, seed 0): " + "; ".join(sizes))


def _check_cells(cells) -> None:
    """Before the first cell (and in --dry-run): what a cell could only find out when it starts, found
    now: a DP target epsilon that no noise multiplier in the searched range meets."""
    from cllora.engine.private_round import (  # lazy: the CLI starts without any command's dependencies
        noise_multiplier,
    )
    from cllora.errors import UserError  # lazy: the CLI starts without any command's dependencies

    for cell in cells:
        if cell.config.dp_clip is not None:
            try:
                noise_multiplier(cell.config)
            except UserError as exc:
                raise UserError(f"cell {cell.name}: {exc}") from None


def _check_root(root: Path, flag: str) -> None:
    """Before any cell: the sweep folder can be written and is not a run's directory."""
    from cllora import records  # lazy: the CLI starts without any command's dependencies
    from cllora.errors import UserError  # lazy: the CLI starts without any command's dependencies

    records.check_output_dir(root, flag)
    if records.is_run_dir(root):
        raise UserError(f"{flag} {str(root)!r} holds a run (config.json); a sweep needs its own folder, "
                        "or one holding only sweeps")


def _ray_options(args: argparse.Namespace):
    """RayOptions for --ray (checked before anything runs), None for a sequential sweep."""
    from cllora.errors import UserError  # lazy: the CLI starts without any command's dependencies

    if args.ray is None:
        extra = [f for f, v in (("--cell-cpus", args.cell_cpus), ("--cell-gpus", args.cell_gpus)) if v is not None]
        if extra:
            raise UserError(f"{extra[0]} applies to Ray sweeps only: add --ray (or drop {extra[0]})")
        return None
    from cllora.sweep.on_ray import RayOptions  # lazy: the CLI starts without any command's dependencies

    return RayOptions(address=args.ray or None, cell_cpus=args.cell_cpus, cell_gpus=args.cell_gpus)


def _dry_run(spec, cells, root: Path, ray_options) -> None:
    """The cells, their status and what each will cost (cllora.sweep.estimate)."""
    import os

    # lazy: the CLI starts without any command's dependencies
    from cllora.sweep import (estimate as sweep_estimate)
    from cllora.sweep import index as sweep_index  # lazy: the CLI starts without any command's dependencies

    print(f"sweep {spec.name} ({spec.source}): {len(cells)} cells in {root}")
    rows = sweep_index.describe_cells(cells, root)
    costs, _, basis = sweep_estimate.estimate(cells, root)
    for row, cost in zip(rows, costs):
        row["cost"] = sweep_estimate.cost_column(cost)
    print(sweep_index.format_table(rows))
    parallel = None
    if ray_options is not None and ray_options.address is None:  # a local Ray: this machine's cores
        parallel = max(1, int((os.cpu_count() or 1) // (ray_options.cell_cpus or 1)))
    print(sweep_estimate.summary_line(costs, basis, parallel))
