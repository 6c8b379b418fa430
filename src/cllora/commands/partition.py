"""`cllora partition`: how a corpus is split over clients (length classes, client mixes, skew statistics)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cllora.commands.flags import add_config_flags, config_overrides
from cllora.config.settings import RunConfig

# The RunConfig fields that decide the partition; same flags, help and defaults as `cllora run`,
# so `cllora partition` shows exactly the split that `cllora run` with the same flags trains on.
PARTITION_FIELDS = ("model", "dataset", "text_column", "test_fraction", "max_train_examples", "scheme",
                    "alpha", "clients", "clients_per_round", "num_classes", "class_edges",
                    "length_measure", "client_size", "min_client_size", "local_test_fraction",
                    "client_key", "small_groups", "max_length", "seed")
# natural-only settings, left out of the command line that reproduces a fitted alpha
_NATURAL_ONLY = ("scheme", "alpha", "clients", "client_key", "small_groups", "min_client_size")
DEMO_ALPHAS = (0.1, 1.0, 10.0, 100.0)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "partition", help="show how texts are split over clients (length classes, skew statistics)",
        description="Divide the training texts into length classes and partition them over clients "
                    "(iid, length skew, quantity skew, or natural clients: one per value of a column "
                    "such as the president), then print each client's class mix, heterogeneity "
                    "statistics and notes. Uses the same data, split and seed as `cllora run` with "
                    "the same flags (the global test set is a seeded split of all texts, for natural "
                    "clients too). Loads only the tokenizer, not the model.",
        epilog="Examples:\n  cllora partition --scheme length --alpha 0.1 --clients 20 --plot fig4.png\n"
               "  cllora partition --scheme quantity --alpha 0.1 --clients 10 --json part.json\n"
               "  cllora partition --scheme natural --client-key president --fit-alpha\n"
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
    out.add_argument("--fit-alpha", action="store_true",
                     help="with --scheme natural: estimate the Dirichlet α of length skew and of quantity "
                          "skew whose partitions are as heterogeneous as these natural clients (mean TV "
                          "distance / Gini of sizes, matched by simulation; 95%% interval from the "
                          "simulations and a bootstrap over clients) and print the command line that "
                          "draws such a partition on as many texts")
    out.add_argument("--dirichlet-demo", action="store_true",
                     help="instead: draw Dirichlet(α) samples on the 3-class simplex for "
                          f"α in {', '.join(f'{a:g}' for a in DEMO_ALPHAS)} (the study's Fig. 3) and exit")
    out.add_argument("--demo-samples", type=int, default=500, metavar="N",
                     help="samples per α for --dirichlet-demo [500]")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cllora.config.load import (  # lazy: the CLI starts without any command's dependencies
        check_given,
        file_settings,
    )
    from cllora.config.settings import from_dict  # lazy: the CLI starts without any command's dependencies
    from cllora.errors import UserError  # lazy: the CLI starts without any command's dependencies

    if args.max_rows < 0:
        raise UserError(f"--max-rows must be >= 0, got {args.max_rows}")
    if args.dirichlet_demo:
        return dirichlet_demo(args)
    given = {**(file_settings(args.config) if args.config else {}),
             **config_overrides(args, PARTITION_FIELDS)}
    config = from_dict(given)
    if args.fit_alpha and config.scheme != "natural":
        raise UserError(f"--fit-alpha fits a Dirichlet alpha to natural clients, so it needs --scheme "
                        f"natural --client-key KEY; got scheme {config.scheme!r}")
    check_given(config, given)
    _check_outputs(args)
    # lazy: the CLI starts without any command's dependencies
    from cllora.engine.experiment import prepare_data
    from cllora.model import load_tokenizer  # lazy: the CLI starts without any command's dependencies

    log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731  (stdout holds the tables)
    data = prepare_data(config, load_tokenizer(config.model, log=log), log)
    part = data.partition_dict(config)
    part["length_measure"] = config.length_measure
    print_partition(part, config, data.truncation(config.max_length), args.max_rows)
    if args.fit_alpha:
        part["fitted_alpha"] = fit_and_print(data, config)
    if args.json:
        path = _output_path(args.json)
        path.write_text(json.dumps(part) + "\n")
        print(f"wrote {path}")
    if args.plot:
        # lazy: the CLI starts without any command's dependencies
        from cllora.report.run_figures import plot_partition

        ax = plot_partition(part)
        _name_clients(ax, part)
        _save_figure(ax.figure, args.plot)
    return 0


def _name_clients(ax, part: dict) -> None:
    """Natural clients: their names under the bars (the figure numbers them otherwise)."""
    names = [c.get("name") for c in part["clients"]]
    if part["scheme"] == "natural" and all(names) and len(names) <= 60:
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
        ax.set_xlabel(f"client ({part.get('client_key', 'group')})")
        ax.set_title(f"natural clients by {part.get('client_key', 'group')}: {len(names)} clients")


def fit_and_print(data, config: RunConfig) -> dict:
    """Fit the alphas of length and quantity skew to the natural partition, print them with the
    command lines that draw such partitions, and return them for the JSON."""
    from rich.console import Console
    from rich.table import Table

    from cllora.partition.natural import (  # lazy: the CLI starts without any command's dependencies
        fit_length_alpha,
        fit_quantity_alpha,
        same_size_iid_tv,
    )
    from cllora.seeds import stream  # lazy: the CLI starts without any command's dependencies

    rng = stream(config.seed, "partition", 1)  # a sub-stream of the partition's own
    size = _same_total_size(data.partition.clients, len(data.labels))
    fits = {"length": fit_length_alpha(data.partition, data.labels, config.num_classes, rng, client_size=size),
            "quantity": fit_quantity_alpha(data.partition, data.labels, config.num_classes, rng,
                                           client_size=size, min_client_size=config.min_client_size)}
    t = Table(title=f"Which Dirichlet \u03b1 do these {len(data.partition.clients)} natural clients look like? "
                    "(matched by simulation; 95% interval: simulated spread \u222a bootstrap over clients)")
    for col in ("skew", "statistic matched", "observed", "fitted \u03b1", "95% interval"):
        t.add_column(col, justify="right")
    for scheme, what in (("length", "mean TV distance"), ("quantity", "Gini of client sizes")):
        f = fits[scheme]
        t.add_row(scheme, what, f"{f.statistic:.3f}", f"{f.alpha:.3g}", _interval(f))
    console = Console()
    console.print(t)
    noise = same_size_iid_tv(data.partition, data.labels, config.num_classes, rng)
    console.print(f"for scale: random clients of the same sizes show a mean TV distance of {noise:.3f} "
                  "(sampling alone)")
    for scheme, f in fits.items():
        console.print(f"{scheme} skew as heterogeneous as these clients, on as many texts:\n  "
                      f"{_command(config, scheme, f.alpha, size)}", soft_wrap=True)
    return {s: {"alpha": f.alpha, "low": f.low, "high": f.high, "statistic": f.statistic,
                "statistic_name": "mean_tv" if s == "length" else "size_gini",
                "model_interval": list(f.model_interval), "client_interval": list(f.client_interval),
                "command": _command(config, s, f.alpha, size)} for s, f in fits.items()} \
        | {"iid_same_sizes_mean_tv": noise}


def _same_total_size(clients: list, num_texts: int) -> int | None:
    """Texts per client that keep the natural clients' total (None: the partitioners' default)."""
    size = sum(len(rows) for rows in clients) // len(clients)
    return None if size >= num_texts // len(clients) else size


def _interval(fit) -> str:
    low = f"\u2264 {fit.low:.3g}" if fit.low <= fit.grid[0] else f"{fit.low:.3g}"
    high = f"\u2265 {fit.high:.3g}" if fit.high >= fit.grid[-1] else f"{fit.high:.3g}"
    return f"{low} \u2013 {high}"


def _command(config: RunConfig, scheme: str, alpha: float, size: int | None) -> str:
    """`cllora run` with the same data settings, `scheme` at `alpha` over as many clients of `size`."""
    default = RunConfig()
    flags = [f"--scheme {scheme}", f"--alpha {alpha:.3g}", f"--clients {config.clients}"]
    flags += [] if size is None else [f"--client-size {size}"]
    if scheme == "quantity" and config.min_client_size is not None:
        flags.append(f"--min-client-size {config.min_client_size}")
    for name in PARTITION_FIELDS:
        value = getattr(config, name)
        if name in _NATURAL_ONLY + ("clients_per_round", "client_size") or value == getattr(default, name):
            continue
        shown = ",".join(f"{v:g}" for v in value) if name == "class_edges" else value
        flags.append(f"--{name.replace('_', '-')} {shown}")
    if config.clients_per_round != default.clients_per_round:
        flags.append(f"--clients-per-round {config.clients_per_round}")
    return "cllora run " + " ".join(flags)


def _check_outputs(args: argparse.Namespace) -> None:
    """Before the data is read: --json and --plot can be written, --plot in a format matplotlib has."""
    from cllora.files import (  # lazy: the CLI starts without any command's dependencies
        check_figure_format,
        check_output_file,
    )

    if args.json:
        check_output_file(args.json, "--json")
    if args.plot:
        check_output_file(args.plot, "--plot")
        check_figure_format(args.plot, "--plot")


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
    skew = (f" by {part.get('client_key')}" if part["scheme"] == "natural"
            else "" if part["scheme"] == "iid" else f" \u03b1={part['alpha']:g}")
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
    named = any("name" in c for c in part["clients"])
    for col in ["client"] + ["name"] * named + ["size"] + [f"c{c}" for c in range(k)] + ["dominant", "TV"]:
        clients.add_column(col, justify="left" if col == "name" else "right")
    for c in part["clients"][:max_rows]:
        i = c["client_id"]
        clients.add_row(str(i), *[c.get("name", "")] * named, f"{c['size']:,}",
                        *[str(x) for x in c["class_counts"]], _fmt(stats["dominant_share"][i]),
                        _fmt(stats["tv"][i]))
    if part["num_clients"] > max_rows:
        clients.add_row("…", *[""] * named, f"{part['num_clients'] - max_rows} more", *[""] * (k + 2))
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

    from cllora.errors import UserError  # lazy: the CLI starts without any command's dependencies

    if args.demo_samples < 1:
        raise UserError(f"--demo-samples must be >= 1, got {args.demo_samples}")
    _check_outputs(args)
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
        # lazy: the CLI starts without any command's dependencies
        from cllora.report.run_figures import plot_dirichlet_simplex

        _save_figure(plot_dirichlet_simplex(samples)[0].figure, args.plot)
    else:
        print("add --plot PATH to save the simplex figure")
    return 0
