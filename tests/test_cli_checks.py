"""The command line on bad or inapplicable input: exit 2 with one sentence, nothing written; and the
runs that used to crash after finishing (issue 19 §3), on the tests' tiny OPT."""

from __future__ import annotations

import json

import pytest
from wording import as_keys

from cllora import records
from cllora.cli import main


def tiny_args(model: str, out, *extra: str) -> list[str]:
    return ["run", "--model", model, "--max-train-examples", "120", "--max-test-examples", "12",
            "--clients", "4", "--clients-per-round", "2", "--rounds", "1", "--max-length", "64",
            "--rank", "2", "--precision", "fp32", "--device", "cpu", "--quiet", "--out", str(out), *extra]


def refused(capsys, argv: list[str], message: str) -> str:
    """Run the CLI, expect exit 2 and `message` in its one-line error (settings named by their
    keys, see as_keys), no traceback."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert as_keys(message) in as_keys(err), err
    assert "Traceback" not in err
    return err


def test_fairness_every_0_finishes_with_a_summary(tiny_model, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(tiny_args(tiny_model, out, "--fairness-every", "0")) == 0
    printed = capsys.readouterr().out
    assert "not measured (--fairness-every 0)" in printed
    assert records.read_csv(out / "rounds.csv")[-1]["fairness_var"] is None


def test_resuming_a_finished_run_says_so_and_changes_nothing(tiny_model, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(tiny_args(tiny_model, out)) == 0
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert main(["run", "--resume", str(out), "--quiet"]) == 0
    assert "already complete (1 round); nothing to do" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert "resumes" not in json.loads((out / "config.json").read_text())
    # a resume that changes a result-defining setting is still refused first
    refused(capsys, ["run", "--resume", str(out), "--lr", "0.1", "--quiet"], "the run was made with lr=")


def test_max_length_above_the_context_is_refused_before_anything_is_written(tiny_model, tmp_path, capsys):
    out = tmp_path / "run"
    refused(capsys, tiny_args(tiny_model, out, "--max-length", "600"),
            "max_length (600) is above the model's context of 512 tokens; use at most 512")
    assert not out.exists()


@pytest.mark.parametrize("flags, message", [
    (["--scheme", "length", "--alpha", "0.5", "--client-key", "president"],
     "client_key ('president') is only used with scheme natural, not with scheme 'length'"),
    (["--scheme", "iid", "--alpha", "0.1"], "alpha (0.1) is only used with scheme length/quantity"),
    (["--scheme", "iid", "--small-groups", "merge"], "small_groups ('merge') is only used with scheme natural"),
    (["--round-timeout", "30"], "round_timeout (30.0) is only used with engine flower-sim, not with "
                                "engine 'inprocess'"),
])
def test_settings_a_run_would_ignore_are_refused(tiny_model, tmp_path, capsys, flags, message):
    out = tmp_path / "run"
    refused(capsys, tiny_args(tiny_model, out, *flags), message)
    assert not out.exists()


def test_a_config_file_setting_the_run_would_ignore_is_refused(tiny_model, tmp_path, capsys):
    (tmp_path / "exp.toml").write_text('[run]\nscheme = "iid"\nalpha = 0.1\n')
    out = tmp_path / "run"
    refused(capsys, tiny_args(tiny_model, out, "--config", str(tmp_path / "exp.toml")),
            "alpha (0.1) is only used with scheme length/quantity, not with scheme 'iid'")
    assert not out.exists()
    # cllora partition refuses it the same way
    refused(capsys, ["partition", "--model", tiny_model, "--scheme", "quantity", "--client-key", "party"],
            "client_key ('party') is only used with scheme natural")


@pytest.mark.parametrize("toml, message", [
    ('eval_fp32 = "no"', "eval_fp32 must be true or false, got 'no'"),
    ("targets = 5", "targets must be a list of names or comma-separated text, got 5"),
    ('seed = "a"', "seed must be an integer, got 'a'"),
    ("seed = -1", "seed must be an integer >= 0, got -1"),
])
def test_wrong_toml_types_exit_2_and_write_nothing(tiny_model, tmp_path, capsys, toml, message):
    (tmp_path / "exp.toml").write_text(f"[run]\n{toml}\n")
    out = tmp_path / "run"
    refused(capsys, tiny_args(tiny_model, out, "--config", str(tmp_path / "exp.toml")), message)
    assert not out.exists()


def test_a_bad_grid_value_fails_up_front(tmp_path, capsys):
    out = tmp_path / "sweep"
    refused(capsys, ["sweep", "--preset", "study-length", "--quick", "--grid", "seed=a", "--dry-run",
                     "--out", str(out)], "seed must be an integer, got 'a'")
    refused(capsys, ["sweep", "--preset", "study-length", "--quick", "--grid", "seed=0,a", "--out", str(out)],
            "seed must be an integer, got 'a'")
    assert not out.exists()


def test_a_grid_may_give_alpha_to_cells_that_ignore_it(tmp_path, capsys):
    (tmp_path / "grid.toml").write_text('[run]\nalpha = 0.1\nclient_key = "president"\n'
                                        '[grid]\nscheme = ["iid", "length", "natural"]\n')
    assert main(["sweep", "--config", str(tmp_path / "grid.toml"), "--dry-run",
                 "--out", str(tmp_path / "sweep")]) == 0
    shown = capsys.readouterr().out
    assert "3 cells" in shown and "iid-s0" in shown and "length-a0.1-s0" in shown


def write_fake_run(path, **config):
    """A finished 2-round run directory as the engine writes it (no model needed)."""
    config = {"model": "m", "dataset": "sotu", "scheme": "iid", "alpha": 1.0, "seed": 0, "rounds": 2,
              "clients": 4, "clients_per_round": 2, "rank": 2, "targets": ["q_proj", "v_proj"], **config}
    path.mkdir(parents=True)
    records.write_json(path / "config.json", {"config": config, "precision": "fp32", "device": "cpu",
                                              "adapter_bytes": 4000})
    rows = [{"round": r, "global_test_loss": loss, "fairness_var": 0.01, "agg_error": 0.1 if r else None,
             "drift_mean": 0.2 if r else None, "bytes_cumulative": 8000 * r, "round_seconds": 1.0}
            for r, loss in enumerate((3.0, 2.6, 2.4))]
    records.write_csv(path / "rounds.csv", records.ROUND_COLUMNS, rows)
    records.write_json(path / "summary.json", {"rounds_completed": 2})


def natural_sweep(root):
    for strategy in ("fedavg", "fedprox"):
        for scheme in ("natural", "iid"):
            extra = {"client_key": "president"} if scheme == "natural" else {}
            write_fake_run(root / "m" / f"{scheme}-{strategy}-s0", scheme=scheme, strategy=strategy, **extra)


def test_strategy_figures_of_a_natural_sweep(tmp_path):
    from cllora.report.draw import _draw_strategies
    from cllora.analysis.runs import load_runs

    natural_sweep(tmp_path)
    titles = []
    _draw_strategies(load_runs(tmp_path, log=lambda m: None),
                     lambda section, key, fig, title, caption: titles.extend(ax.get_title() for ax in fig.axes))
    assert "natural clients: global test loss" in titles and "IID: global test loss" in titles


def test_report_of_a_natural_sweep_with_two_strategies(tmp_path, capsys):
    natural_sweep(tmp_path)
    assert main(["report", str(tmp_path), "--quiet"]) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert list((tmp_path / "figures").glob("strateg*.png"))


def cut_mid_line(path):
    """Cut a file in the middle of its last line, as an interrupted copy would."""
    text = path.read_text()
    path.write_text(text[:text.rstrip("\n").rfind("\n") + 6])


def test_csvs_cut_mid_line_are_read_without_the_cut_line(tiny_model, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(tiny_args(tiny_model, out)) == 0
    cut_mid_line(out / "rounds.csv")
    cut_mid_line(out / "clients.csv")
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    said = "".join(capsys.readouterr())
    assert "rounds.csv: its last line is cut short" in said and "clients.csv: its last line is cut" in said
    assert [r["round"] for r in records.read_csv(out / "rounds.csv", log=lambda m: None)] == [0]
    # a resume reads them the same way and goes on
    assert main(["run", "--resume", str(out), "--rounds", "2", "--quiet"]) == 0
    assert "its last line is cut short" in capsys.readouterr().err
    assert [r["round"] for r in records.read_csv(out / "rounds.csv")][-1] == 2


def test_a_damaged_csv_row_before_the_last_is_named(tmp_path):
    path = tmp_path / "rounds.csv"
    path.write_text("round,global_test_loss\n0,3.0\n1\n2,2.5\n")
    with pytest.raises(ValueError, match="rounds.csv: line 3 has 1 fields, not 2; the file is damaged"):
        records.read_csv(path)


def test_a_client_key_without_a_big_enough_group_says_what_to_change(tiny_model, tmp_path, capsys):
    corpus = tmp_path / "texts.jsonl"
    rows = [{"text": " ".join(["word"] * (3 + i)) + ".", "author": "ab"[i % 2]} for i in range(40)]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    err = refused(capsys, ["partition", "--model", tiny_model, "--dataset", str(corpus), "--scheme", "natural",
                           "--client-key", "author", "--clients", "2", "--min-client-size", "50"],
                  "client key 'author'")
    assert "--clients 1 or fewer" not in err and "--min-client-size" in err


def test_sweep_budget_flag_bad_values_exit_2(capsys, tmp_path):
    refused(capsys, ["sweep", "--preset", "study-length", "--quick", "--budget", "study", "--dry-run",
                     "--out", str(tmp_path / "s")], "quick means budget quick; it cannot go with budget study")
    with pytest.raises(SystemExit) as exc:  # argparse: the allowed choices, exit 2
        main(["sweep", "--preset", "study-length", "--budget", "huge", "--dry-run"])
    assert exc.value.code == 2
    assert "invalid choice: 'huge'" in capsys.readouterr().err
    refused(capsys, ["sweep", "--preset", "study-natural", "--budget", "study", "--dry-run", "--out",
                     str(tmp_path / "n")], "has no [study] table, so budget study has nothing to change")
    assert not (tmp_path / "s").exists() and not (tmp_path / "n").exists()


def test_sweep_list_presets_shows_the_study_budget_with_hours(capsys):
    assert main(["sweep", "--list-presets"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "budgets" in ln and "study:" in ln)
    assert "quick:" in line and " h" in line
    assert out.count("study: ") == 4  # study-length, -quantity, -local, -size


def test_sweep_dry_run_at_the_study_budget_estimates_each_cell(capsys, tmp_path):
    assert main(["sweep", "--preset", "study-length", "--budget", "study", "--dry-run",
                 "--out", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "sweep study-length-study" in out and "estimate: ~" in out
    assert not (tmp_path / "s").exists()
