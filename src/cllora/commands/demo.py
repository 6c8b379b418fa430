"""`cllora demo`: a real small experiment on the embedded default — IID vs length skew α=0.1."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

# Sized to finish in under ~10 minutes on 2 CPU cores with the real SmolLM2-135M (bf16 on CPUs
# with AMX/AVX512-BF16); the study's max_length of 128.
DEMO_SETTINGS = dict(model="smollm2-135m", dataset="sotu", clients=10, clients_per_round=2,
                     rounds=3, local_epochs=1, batch_size=8, lr=2e-3, rank=8, lora_alpha=16.0,
                     max_length=128, max_train_examples=320, max_test_examples=48, seed=0,
                     fairness_every=1)  # the fairness curve needs every round
DEMO_CELLS = (("iid", dict(scheme="iid")), ("length-a0.1", dict(scheme="length", alpha=0.1)))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="IID vs length skew (α=0.1) on the embedded model and corpus, a few minutes",
        description="Runs two small federated LoRA experiments on the real SmolLM2-135M and the "
                    "State of the Union corpus (offline): IID clients and length-skewed clients "
                    f"(Dirichlet α=0.1). Settings: {DEMO_SETTINGS}.")
    p.add_argument("--out", metavar="DIR", help="where to write the two runs [runs/demo-<timestamp>]")
    p.add_argument("--rounds", type=int, default=DEMO_SETTINGS["rounds"],
                   help=f"communication rounds [{DEMO_SETTINGS['rounds']}]")
    p.add_argument("--model", default=DEMO_SETTINGS["model"], help="model [smollm2-135m]")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where to train: auto = a CUDA GPU when torch can use one, else the CPU (said "
                        "on stderr and in config.json) [auto]")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from cllora.commands.run import print_summary  # lazy: the CLI starts without any command's dependencies
    from cllora.config.settings import RunConfig  # lazy: the CLI starts without any command's dependencies
    from cllora.engine.progress import RunProgress  # lazy: the CLI starts without any command's dependencies
    from cllora.engine.runtime import (  # lazy: the CLI starts without any command's dependencies
        build_runtime,
        resolve,
    )
    from cllora.runner import run as run_one  # lazy: the CLI starts without any command's dependencies

    out = Path(args.out) if args.out else Path("runs") / dt.datetime.now().strftime("demo-%Y%m%d-%H%M%S")
    configs = {name: RunConfig().replace(**{**DEMO_SETTINGS, "rounds": args.rounds, "model": args.model,
                                            "device": args.device, **cell}) for name, cell in DEMO_CELLS}
    console = Console(stderr=True)
    first = next(iter(configs.values()))
    device, precision = resolve(first)
    console.print(f"cllora demo: {args.model} on sotu, {first.clients} clients, "
                  f"{first.clients_per_round} per round, {first.rounds} rounds, {precision} on {device}")
    runtime = build_runtime(first, log=console.print)
    summaries = {}
    for name, config in configs.items():
        progress = RunProgress(enabled=not args.quiet, console=console, label=f"[{name}] ")
        summaries[name] = run_one(config, out / name, base_model=runtime.model,
                                         tokenizer=runtime.tokenizer,
                                         progress=progress, log=progress.log)
        print_summary(summaries[name])
    figure = save_comparison(out, list(configs))
    Console().print(f"\ndemo done. Compare the two runs in {figure}; each run directory holds "
                    f"rounds.csv, clients.csv, global_loss.png, client_loss.png, partition.png. "
                    f"{ONE_SEED}")
    return 0


ONE_SEED = ("One seed: a point estimate, not a finding (cllora sweep with several seeds gives "
            "intervals and verdicts).")


def fairness_change(rows: list[dict]) -> tuple[list[int], list[float]]:
    """(rounds, noise-corrected fairness variance minus round 0's) of one run's rounds.csv rows.

    The raw variance also holds the sampling noise of each client's small test split, which differs
    between partitions before any training; the corrected variance and its change since round 0
    show what training did."""
    points = [(r["round"], r["fairness_var_corrected"]) for r in rows
              if r.get("fairness_var_corrected") is not None]
    if not points or points[0][0] != 0:
        return [], []
    return [r for r, _ in points], [v - points[0][1] for _, v in points]


def within_noise(runs: list[list[dict]]) -> bool:
    """True when every evaluated round of every run has a noise-corrected fairness variance at or
    below 0 (it is not floored): the clients' spread never exceeds the noise of their test splits
    (nothing to see)."""
    values = [r.get("fairness_var_corrected") for rows in runs for r in rows]
    values = [v for v in values if v is not None]
    return bool(values) and all(v <= 0 for v in values)


def save_comparison(out: Path, names: list[str]) -> Path:
    """One figure: global test loss and the change of the noise-corrected fairness variance since
    round 0, per round, of each demo run side by side."""
    import matplotlib.pyplot as plt

    from cllora.records import (  # lazy: the CLI starts without any command's dependencies
        read_csv,
        save_figure,
    )
    # lazy: the CLI starts without any command's dependencies
    from cllora.report.run_figures import plot_global_loss

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.3))
    runs = [read_csv(out / name / "rounds.csv") for name in names]
    for name, rows in zip(names, runs):
        plot_global_loss(rows, axes[0], label=name)
        axes[1].plot(*fairness_change(rows), marker="o", label=name)
    quiet = within_noise(runs)
    if quiet:  # the corrected variance never exceeds 0: say what that means, below the panels (never over a line)
        fig.text(0.75, 0.015, "Fairness: in every round the spread across clients is within the noise of their\n"
                 "small test splits (raw variance below the mean squared standard error), so the\n"
                 "corrected variance is <= 0: no measurable difference in fairness at this size.",
                 ha="center", va="bottom", fontsize=8, color="#444444")
    axes[0].set_title("Global test loss")
    axes[1].set_title("Fairness: change of the noise-corrected variance\nof clients' test loss since round 0")
    axes[1].axhline(0.0, color="#888888", lw=0.8)
    axes[1].set_xlabel("communication round")
    axes[1].xaxis.get_major_locator().set_params(integer=True)
    axes[1].grid(alpha=0.3)
    axes[1].set_ylabel("Δ corrected variance (nats²)")
    for ax in axes:
        ax.legend()
    fig.suptitle(ONE_SEED, fontsize=9)
    fig.tight_layout(rect=(0, 0.13 if quiet else 0, 1, 1))
    path = out / "demo.png"
    save_figure(fig, path, dpi=120)
    return path
