"""CONTRIBUTING.md's recipes, exercised: a toy partition scheme, strategy, metric column and report
figure, each added in one registration to a registry (undone after the test), reach the config, the
engine, the files and the report."""

from __future__ import annotations

import math

import numpy as np
import pytest
from wording import as_keys

from cllora import partition, records
from cllora.aggregate import STRATEGIES
from cllora.aggregate.base import Aggregated, Strategy
from cllora.aggregate.fedavg import fedavg
from cllora.config.settings import RunConfig
from cllora.engine.loop import run_experiment
from cllora.errors import UserError
from cllora.partition import Partition, Scheme
from cllora.report import write_report
from cllora.report.axes import plt
from cllora.report.draw import REPORT_FIGURES
from cllora.analysis.stats import curve


def tiny(model: str, **changes) -> RunConfig:
    return RunConfig(model=model, dataset="sotu", max_train_examples=60, max_test_examples=12, max_length=32,
                     clients=4, clients_per_round=2, rounds=1, rank=2, local_test_fraction=0.25,
                     precision="fp32", **changes)


def partition_halves(labels, num_clients, rng, *, num_classes, **settings) -> Partition:
    rows = rng.permutation(len(labels))
    return Partition([np.sort(part) for part in np.array_split(rows, num_clients)])


@pytest.fixture
def halves(monkeypatch):
    monkeypatch.setitem(partition.SCHEMES, "halves", Scheme("halves", "halves", False, partition_halves))


def test_recipe_a_partition_scheme(halves, tiny_model, tmp_path):
    assert "halves" in partition.scheme_names() and partition.scheme_title("halves") == "halves"
    p = partition.make_partition("halves", np.zeros(10, np.int64), 2, np.random.default_rng(0), num_classes=1)
    assert sorted(np.concatenate(p.clients)) == list(range(10))
    with pytest.raises(UserError, match="alpha"):  # not a Dirichlet scheme: --alpha is refused
        from cllora.config.load import check_given
        check_given(tiny(tiny_model, scheme="halves"), ["alpha"])
    run_experiment(tiny(tiny_model, scheme="halves"), tmp_path / "run", log=lambda m: None)
    saved = records.read_json(tmp_path / "run" / "partition.json")
    assert saved["scheme"] == "halves" and len(saved["clients"]) == 4


def test_an_unregistered_scheme_is_refused(tiny_model):
    with pytest.raises(UserError, match="halves"):
        tiny(tiny_model, scheme="halves")


def _uniform(global_state, server_state, replies, opts):
    return Aggregated(fedavg([r.state for r in replies], [1.0] * len(replies)), server_state)


def test_recipe_a_strategy(monkeypatch, tiny_model, tmp_path):
    seen = {}

    def aggregate(global_state, server_state, replies, opts):
        seen["weights"] = [r.weight for r in replies]
        seen["mean"] = fedavg([r.state for r in replies], [1.0] * len(replies))
        return _uniform(global_state, server_state, replies, opts)

    monkeypatch.setitem(STRATEGIES, "uniform-avg", Strategy("uniform-avg", "the unweighted mean", aggregate))
    run_experiment(tiny(tiny_model, strategy="uniform-avg", scheme="quantity", alpha=0.5),
                   tmp_path / "run", log=lambda m: None)
    assert len(set(seen["weights"])) > 1  # the clients differ in size: FedAvg would weigh them
    from safetensors.torch import load_file

    kept = load_file(str(tmp_path / "run" / "adapter" / "adapter_model.safetensors"))
    assert kept and len(kept) == len(seen["mean"])
    assert records.saved_config(tmp_path / "run").strategy == "uniform-avg"


def global_test_bits(row: dict) -> float | None:
    loss = row.get("global_test_loss")  # None in a round that was not evaluated
    return None if loss is None else loss / math.log(2)


@pytest.fixture
def bits_column(monkeypatch):
    column = records.Column("global_test_bits", "Global test loss (bits)", "loss", report="table",
                            derive=global_test_bits)
    monkeypatch.setitem(records.ROUND_TABLE, column.name, column)


def test_recipe_a_metric_column(bits_column, tiny_model, tmp_path):
    run_experiment(tiny(tiny_model), tmp_path / "run", log=lambda m: None)
    rounds = records.read_csv(tmp_path / "run" / "rounds.csv")
    assert rounds and all(r["global_test_bits"] == r["global_test_loss"] / math.log(2) for r in rounds)
    page = write_report(tmp_path / "run", log=lambda m: None).read_text()
    assert "<th>Global test loss (bits)</th>" in page  # a column of the summary table, with its final value
    assert f"<td class=\"num\">{rounds[-1]['global_test_bits']:.4f}</td>" in page


def draw_loss_per_run(inputs, save) -> None:
    fig, ax = plt.subplots()
    for run in inputs.runs:
        points = curve(run.rounds, "global_test_loss")
        ax.plot([x for x, _ in points], [y for _, y in points], label=run.name)
    save("global", "loss_per_run", fig, "Global test loss of each run", "One curve per run.")


@pytest.fixture
def loss_per_run_figure(monkeypatch):
    monkeypatch.setitem(REPORT_FIGURES, "loss_per_run", draw_loss_per_run)


def test_recipe_a_report_figure(loss_per_run_figure, tiny_model, tmp_path):
    run_experiment(tiny(tiny_model), tmp_path / "run", log=lambda m: None)
    page = write_report(tmp_path / "run", log=lambda m: None).read_text()
    assert (tmp_path / "run" / "figures" / "loss_per_run.png").is_file()
    assert (tmp_path / "run" / "figures" / "loss_per_run.svg").is_file()
    assert "<figure id=\"fig-loss_per_run\">" in page and "Global test loss of each run" in page


# A toy strategy with one option, registered before cllora.config is imported (as the registry's
# tuple in cllora/aggregate/__init__.py is): its declaration alone must give the option a RunConfig
# field, a flag, bound and type checks and the "ignored by this strategy" refusal.
TOY_WITH_OPTION = """
import json, sys
from cllora.aggregate import STRATEGIES, strategy_options
from cllora.aggregate.base import Option, Strategy
from cllora.aggregate.fedavg import fedavg_aggregate

SHRINK = Option("shrink", 0.5, "uniform-avg: share of the mean kept", "S", below=1.0)
STRATEGIES["uniform-avg"] = Strategy("uniform-avg", "the mean", fedavg_aggregate, options=(SHRINK,))
from cllora.cli import main
from cllora.config.settings import RunConfig

if sys.argv[1] == "options":
    print(json.dumps(strategy_options("uniform-avg", RunConfig(strategy="uniform-avg", shrink=0.25).to_dict())))
    sys.exit(0)
sys.exit(main(sys.argv[1:]))
"""


def _toy(*argv: str):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", TOY_WITH_OPTION, *argv], capture_output=True, text=True)


def test_recipe_a_strategy_option_is_declared_once(tiny_model, tmp_path):
    import json

    assert json.loads(_toy("options").stdout)["shrink"] == 0.25
    shown = _toy("run", "--help").stdout
    assert "--shrink S" in shown and "uniform-avg: share of the mean kept [0.5]" in shown
    toml = tmp_path / "bad.toml"
    toml.write_text('strategy = "uniform-avg"\nshrink = "half"\n')
    base = ["run", "--model", tiny_model, "--quiet", "--out", str(tmp_path / "run")]
    for extra, message in [(["--strategy", "uniform-avg", "--shrink", "1.5"], "shrink must be in [0, 1), got 1.5"),
                           (["--strategy", "uniform-avg", "--shrink", "-1"], "shrink must be a number >= 0, got -1.0"),
                           (["--config", str(toml)], "shrink must be a number, got 'half'"),
                           (["--strategy", "fedavg", "--shrink", "0.1"],
                            "shrink = 0.1 is only used by strategy uniform-avg, not by 'fedavg'")]:
        done = _toy(*base, *extra)
        assert done.returncode == 2, done.stderr
        assert message in as_keys(done.stderr) and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "run").exists()
