"""`cllora partition`: how a corpus is split over clients (length classes, client mixes, skew statistics)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cllora.commands.flags import add_config_flags, config_overrides
from cllora.config import RunConfig

# The RunConfig fields that decide the partition; same flags, help and defaults as `cllora run`,
# so `cllora partition` shows exactly the split that `cllora run` with the same flags trains on.
PARTITION_FIELDS = ("model", "dataset", "text_column", "test_fraction", "max_train_examples", "scheme",
                    "alpha", "clients", "clients_per_round", "num_classes", "class_edges",
                    "length_measure", "client_size", "min_client_size", "local_test_fraction",
                    "max_length", "seed")
DEMO_ALPHAS = (0.1, 1.0, 10.0, 100.0)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "partition", help="show how texts are split over clients (length classes, skew statistics)",
        description="Divide the training texts into length classes and partition them over clients "
                    "(iid, length skew or quantity skew), then print each client's class mix, "
                    "heterogeneity statistics and notes. Uses the same data, split and seed as "
                    "`cllora run` with the same flags. Loads only the tokenizer, not the model.",
        epilog="Examples:\n  cllora partition --scheme length --alpha 0.1 --clients 20 --plot fig4.png\n"
               "  cllora partition --scheme quantity --alpha 0.1 --clients 10 --json part.json\n"
               "  cllora partition --dirichlet-demo --plot fig3.png",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="FILE.toml", help="TOML file of run settings ([run] table or top level)")
    add_config_flags(p, PARTITION_FIELDS, "partition settings (override the config file; defaults in "
                     "brackets)", aliases={"class_edges": "--edges"})
    out = p.add_argument_group("output")
    out.add_argument("--json", metavar="PATH", help="write the partition (settings, statistics, every "
                                                    "client's rows and class counts) as JSON")
    out.add_argument("--plot", metavar="PATH", help="save the figure (.png/.pdf/.svg): client class "
                                                    "mixes, or with --dirichlet-demo the simplex")
    out.add_argument("--max-rows", type=int, default=30, metavar="N",
                     help="clients shown in the table; all are in --json [30]")
    out.add_argument("--dirichlet-demo", action="store_true",
                     help="instead: draw Dirichlet(α) samples on the 3-class simplex for "
                          f"α in {', '.join(f'{a:g}' for a in DEMO_ALPHAS)} (the study's Fig. 3) and exit")
    out.add_argument("--demo-samples", type=int, default=500, metavar="N",
                     help="samples per α for --dirichlet-demo [500]")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cllora.config import load_config
    from cllora.errors import UserError

    if args.max_rows < 0:
        raise UserError(f"--max-rows must be >= 0, got {args.max_rows}")
    if args.dirichlet_demo:
        return dirichlet_demo(args)
    config = load_config(args.config, **config_overrides(args, PARTITION_FIELDS))
    from cllora.experiment import prepare_data
    from cllora.model import load_tokenizer

    log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731  (stdout holds the tables)
    data = prepare_data(config, load_tokenizer(config.model, log=log), log)
    part = data.partition_dict(config)
    part["length_measure"] = config.length_measure
    print_partition(part, config, data.truncation(config.max_length), args.max_rows)
    if args.json:
        path = _output_path(args.json)
        path.write_text(json.dumps(part) + "\n")
        print(f"wrote {path}")
    if args.plot:
        from cllora.report.figures import plot_partition

        _save_figure(plot_partition(part).figure, args.plot)
    return 0


def _output_path(name: str) -> Path:
    path = Path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _save_figure(fig, name: str) -> None:
    import matplotlib.pyplot as plt

    path = _output_path(name)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {path}")


def _class_ranges(edges: list[float], unit: str) -> list[str]:
    if not edges:
        return []
    return ([f"\u2264 {edges[0]:g} {unit}"] + [f"{a:g} < x \u2264 {b:g}" for a, b in zip(edges, edges[1:])]
            + [f"> {edges[-1]:g} {unit}"])


def print_partition(part: dict, config: RunConfig, truncation: dict, max_rows: int) -> None:
    """Length classes, the clients' class mixes, the heterogeneity statistics and the notes."""
    from rich.console import Console
    from rich.table import Table

    console, stats, k = Console(), part["stats"], part["num_classes"]
    skew = "" if part["scheme"] == "iid" else f" \u03b1={part['alpha']:g}"
    classes = Table(title=f"Length classes ({config.length_measure}; {config.dataset}, "
                          f"{stats['num_examples']:,} training texts)")
    for col in ("class", "range", "texts", "share", f"> {config.max_length} tokens"):
        classes.add_column(col, justify="right")
    for c, rng in enumerate(_class_ranges(part["class_edges"], config.length_measure)):
        size = stats["class_sizes"][c]
        classes.add_row(str(c), rng, f"{size:,}", f"{size / max(stats['num_examples'], 1):.1%}",
                        f"{truncation['per_class'][c]:.0%}" if c < len(truncation["per_class"]) else "-")
    console.print(classes)
    clients = Table(title=f"Clients: {part['scheme']}{skew}, {part['num_clients']} clients, seed {part['seed']}")
    for col in ["client", "size"] + [f"c{c}" for c in range(k)] + ["dominant", "TV"]:
        clients.add_column(col, justify="right")
    for c in part["clients"][:max_rows]:
        i = c["client_id"]
        clients.add_row(str(i), f"{c['size']:,}", *[str(x) for x in c["class_counts"]],
                        _fmt(stats["dominant_share"][i]), _fmt(stats["tv"][i]))
    if part["num_clients"] > max_rows:
        clients.add_row("…", f"{part['num_clients'] - max_rows} more", *[""] * (k + 2))
    console.print(clients)
    console.print(_stats_table(stats))
    for note in part["notes"]:
        console.print(f"note: {note}")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _stats_table(stats: dict):
    from rich.table import Table

    t = Table(title="Heterogeneity (0 = every client mirrors the pooled mix)", show_header=False)
    t.add_column(style="bold")
    t.add_column(justify="right")
    t.add_row("mean dominant-class share", _fmt(stats["mean_dominant_share"]))
    t.add_row("mean / max total-variation distance", f"{_fmt(stats['mean_tv'])} / {_fmt(stats['max_tv'])}")
    t.add_row("mean Hellinger distance", _fmt(stats["mean_hellinger"]))
    t.add_row("client size min / mean / max", f"{stats['size_min']:,} / {stats['size_mean']:,.1f} / "
                                              f"{stats['size_max']:,}")
    t.add_row("Gini of client sizes", f"{stats['size_gini']:.3f}")
    t.add_row("texts assigned", f"{stats['num_assigned']:,} of {stats['num_examples']:,}")
    return t


def dirichlet_demo(args: argparse.Namespace) -> int:
    """Draw Dirichlet(α·1) samples over 3 classes for several α (seeded) and show how concentrated."""
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from cllora.errors import UserError

    if args.demo_samples < 1:
        raise UserError(f"--demo-samples must be >= 1, got {args.demo_samples}")
    seed = RunConfig().seed if args.seed is None else args.seed
    rng = np.random.default_rng(seed)
    samples = {a: rng.dirichlet(np.full(3, a), size=args.demo_samples) for a in DEMO_ALPHAS}
    t = Table(title=f"Dirichlet(α) over 3 classes, {args.demo_samples} samples each, seed {seed}")
    for col in ("α", "mean largest share", "samples with a share > 0.9"):
        t.add_column(col, justify="right")
    for a, s in samples.items():
        t.add_row(f"{a:g}", f"{s.max(axis=1).mean():.3f}", f"{(s.max(axis=1) > 0.9).mean():.1%}")
    Console().print(t)
    if args.plot:
        from cllora.report.figures import plot_dirichlet_simplex

        _save_figure(plot_dirichlet_simplex(samples)[0].figure, args.plot)
    else:
        print("add --plot PATH to save the simplex figure")
    return 0
