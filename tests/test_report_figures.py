"""The report's figures read at a glance (no browser needed): panel titles of at most two short
lines, one legend per figure, every axis labelled with its unit, and no panel for a setting that
does not belong to the study figure it sits under; the forest plot of the claims."""

from __future__ import annotations

import re

import pytest

from cllora import records
from cllora.analysis.conditions import run_row
from cllora.report import draw, write_report

from test_report_browser import fake_run  # the hand-written run directories of the browser test

UNIT = re.compile(r"\((nats|nats/token|nats²|%|MB|bytes|clients|examples|texts)|round|ε|length class|client")


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """Every figure of a report over a study setting, a DP setting and another strategy, as the
    matplotlib figures the report saved, by file name."""
    root = tmp_path_factory.mktemp("figures") / "sweep"
    for seed in (0, 1):
        for scheme, alpha in (("length", 0.1), ("iid", None)):
            for extra, tag in (({}, "fedavg"), ({"strategy": "fedadam"}, "fedadam"),
                               ({"dp_clip": 0.5, "dp_target_epsilon": 8.0}, "dp8")):
                name = f"{tag}/{scheme}" + (f"-a{alpha:g}" if alpha else "") + f"-s{seed}"
                fake_run(root / name, scheme, alpha, seed, extra={"clients_per_round": 2, **extra})
    saved = {}
    original = draw.save_figure

    def keep(fig, png, svg, **kw):
        saved[png.stem] = fig
        original(fig, png, svg, **kw)
    draw.save_figure = keep
    try:
        write_report(root, log=lambda m: None)
    finally:
        draw.save_figure = original
    return saved


def test_panel_titles_are_at_most_two_short_lines(drawn):
    """At most two lines, each fitting its panel's width (about 14 characters an inch at 10 pt)."""
    for key, fig in drawn.items():
        for ax in fig.axes:
            inches = ax.get_position().width * fig.get_figwidth()
            for title in (ax.get_title(), ax.get_title("left")):
                lines = title.splitlines()
                assert len(lines) <= 2 and all(len(line) <= max(40, 14 * inches) for line in lines), \
                    (key, title, inches)


def test_one_legend_per_figure(drawn):
    for key, fig in drawn.items():
        legends = len(fig.legends) + sum(ax.get_legend() is not None for ax in fig.axes)
        assert legends <= 1, (key, legends)


def test_every_axis_is_labelled_with_its_unit(drawn):
    for key, fig in drawn.items():
        for ax in fig.axes:
            if not ax.get_visible() or not ax.has_data():
                continue
            assert UNIT.search(ax.get_xlabel()), (key, "x", ax.get_xlabel())
            shares = any(ax.get_shared_y_axes().joined(ax, other) for other in fig.axes if other is not ax)
            if not ax.get_yticklabels() or not ax.get_ylabel():
                assert shares or key.startswith(("claims", "partition")), (key, "y", ax.get_ylabel())
            else:
                assert UNIT.search(ax.get_ylabel()) or key.startswith("partition"), (key, "y", ax.get_ylabel())


def test_the_study_figure_holds_only_the_studys_settings(drawn):
    study = [ax.get_title() for ax in drawn["global_loss_length"].axes if ax.get_visible()]
    other = [ax.get_title() for ax in drawn["global_loss_length_other"].axes if ax.get_visible()]
    assert len(study) == 1 and "fedadam" not in study[0] and "DP ε" not in study[0]
    assert len(other) == 2 and any("fedadam" in t for t in other) and any("DP ε = 8" in t for t in other)


def test_the_forest_plot_has_a_row_per_claim_and_setting(drawn):
    fig = drawn["claims_forest"]
    rows = [t.get_text() for ax in fig.axes for t in ax.get_yticklabels()]
    assert rows and all(re.search(r"\(\d+ seeds?\)$|^\d+ more shown, not deciding$", r) for r in rows), rows
    assert not any(re.search(r"\w=\w", r) for r in rows), rows  # named settings, not key=value dumps
    assert len(fig.legends) == 1


def test_the_title_names_the_sweeps_not_the_folder(tmp_path):
    from cllora.analysis.runs import RunRecord
    from cllora.report.html import report_title

    from cllora.analysis.plans import Sweep

    def run(name, folder):
        sweep = Sweep(folder, f"{folder}-quick", "quick", None) if folder else None
        return RunRecord(name, tmp_path / name, {}, {}, [], [], None, None, sweep=sweep)
    runs = [run(f"study-{i}/r", f"study-{i}") for i in range(5)]
    assert report_title(tmp_path, runs, "my title") == "my title"
    assert report_title(tmp_path, runs) == "study-0, study-1, study-2 and 2 more"
    assert tmp_path.name not in report_title(tmp_path, [run(".", "")])
    records.write_json(tmp_path / "index.json", {"sweep": {"name": "study-length-quick"}})
    assert report_title(tmp_path, runs) == "study-length-quick"


def test_the_forest_boundary_is_the_claims_margin():
    from cllora.analysis.claims import LITTLE_LOCAL_EFFECT
    from cllora.report.forest import boundaries
    little = {"claim": "length skew has little effect on local training", "test": "within ±0.02 nats"}
    assert boundaries(little) == [-LITTLE_LOCAL_EFFECT, LITTLE_LOCAL_EFFECT]
    assert boundaries({"margin": 0.1, "test": ""}) == [-0.1, 0.1]
    assert boundaries({"test": "> 0 supports"}) == [0.0]



def test_global_curves_start_at_zero_and_fairness_is_noise_corrected(drawn):
    """The global figure draws each condition's change since round 0 (each seed's own test sample
    is left out of the bands); the fairness figure the noise-corrected variance, not the raw one
    with the splits' sampling noise in it."""
    lines = [line for ax in drawn["global_loss_length"].axes for line in ax.get_lines()]
    assert lines and all(line.get_xdata()[0] == 0 and line.get_ydata()[0] == 0.0 for line in lines)
    assert "noise-corrected" in drawn["fairness_length"].axes[0].get_ylabel()
    rounds = [{"round": r, "global_test_loss": 3.0 - r / 10, "fairness_var": 1.0, "fairness_var_corrected": 0.25}
              for r in range(3)]
    row = run_row("r", {"model": "m", "scheme": "iid", "alpha": 1.0, "rounds": 2}, rounds)
    assert row["fairness_curve"] == [(0, 0.25), (1, 0.25), (2, 0.25)]
    assert [v for _, v in row["change_curve"]] == pytest.approx([0.0, -0.1, -0.2])


def test_a_claim_at_two_budgets_is_one_forest_panel_with_both_side_by_side():
    from cllora.report.forest import claim_panels

    def record(budget, verdict, effect):
        return {"id": "x", "claim": "skew hurts", "budget": budget, "verdict": verdict, "unit": "nats",
                "comparisons": [{"label": "s", "effect": effect, "low": effect - 0.1, "high": effect + 0.1,
                                 "seeds": 3, "decides": True, "verdict": verdict}]}
    other = {**record("quick", "inconclusive", 0.0), "id": "y", "claim": "other"}
    panels = claim_panels([record("quick", "inconclusive", 0.0), record("study", "supported", 0.3), other])
    assert [p["title"] for p in panels] == [
        "skew hurts: quick scale: inconclusive · study budget: supported", "other (quick scale): inconclusive"]
    assert [r["label"] for r in panels[0]["rows"]] == ["quick scale · s (3 seeds)", "study budget · s (3 seeds)"]
    assert panels[0]["verdict"] == "" and panels[1]["verdict"] == "inconclusive"  # disagreeing budgets: no colour


def test_both_budgets_rows_that_do_not_decide_share_one_grey_band_below_the_deciding_rows():
    """Else the band's one label, centred on every grey row, would sit on a deciding row between them."""
    from cllora.report.forest import _y, claim_panels

    def record(budget):
        return {"id": "x", "claim": "skew hurts", "budget": budget, "verdict": "inconclusive", "unit": "nats",
                "comparisons": [{"label": f"{name}", "effect": 0.0, "low": -0.1, "high": 0.1, "seeds": 3,
                                 "decides": name == "d", "verdict": "inconclusive"} for name in ("d", "g1", "g2")]}
    rows = claim_panels([record("quick"), record("study")])[0]["rows"]
    assert [r["label"] for r in rows] == [f"{b} · {n} (3 seeds)" for b, n in (
        ("quick scale", "d"), ("study budget", "d"), ("quick scale", "g1"), ("quick scale", "g2"),
        ("study budget", "g1"), ("study budget", "g2"))]
    y = _y(rows)
    assert min(y[:2]) - max(y[2:]) >= 1.0  # the grey band below every deciding row, a row's gap apart


@pytest.mark.parametrize("rows", [[1], [1, 2], [3], [1] * 12])
def test_the_forest_lays_out_any_number_of_claims_and_rows(rows):
    """tight_layout warns (and leaves titles and ticks overlapping) when a panel has no room."""
    import warnings

    from cllora.report.forest import forest_figure

    def record(cid, n):
        return {"id": cid, "claim": f"claim {cid}", "budget": "quick", "verdict": "inconclusive", "unit": "nats",
                "test": "", "comparisons": [{"label": f"s{i}", "effect": 0.0, "low": -0.1, "high": 0.1, "seeds": 3,
                                             "decides": True, "verdict": "inconclusive"} for i in range(n)]}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = forest_figure([record(str(i), n) for i, n in enumerate(rows)])
    assert len(fig.axes) == len(rows)


def test_the_forest_labels_its_rows_by_the_short_names(tmp_path, monkeypatch):
    """Two sweeps that differ in rounds: the page names one "… · 4 rounds × 1 epoch", its forest row only the sweep
    (the sweep tells the settings apart; the full name would not fit the plot's left margin)."""
    from cllora.analysis import load_runs
    from cllora.analysis.setting_names import run_settings, setting_names

    root = tmp_path / "two-sweeps"
    for sweep, num_rounds in (("sa", 3), ("sb", 4)):
        for seed in (0, 1):
            for scheme, alpha in (("length", 0.1), ("iid", None)):
                name = f"{sweep}/{scheme}" + (f"-a{alpha:g}" if alpha else "") + f"-s{seed}"
                fake_run(root / name, scheme, alpha, seed, num_rounds=num_rounds)
        records.write_json(root / sweep / "index.json", {"sweep": {"name": sweep}, "cells": []})
    settings = run_settings(load_runs(root, lambda m: None))
    full, short = setting_names(*settings), setting_names(*settings, short=True)
    assert sorted(short.values()) == ["sa", "sb"] and any(" · " in n for n in full.values()), full
    saved = {}
    original = draw.save_figure

    def keep(fig, png, svg, **kw):
        saved[png.stem] = fig
        original(fig, png, svg, **kw)
    monkeypatch.setattr(draw, "save_figure", keep)
    write_report(root, log=lambda m: None)
    rows = [t.get_text() for ax in saved["claims_forest"].axes for t in ax.get_yticklabels()]
    named = {re.split(r",| \(", r)[0] for r in rows if not r.endswith("not deciding")}  # "sa, length skew (2 seeds)"
    assert named and named <= {"sa", "sb"}, rows
