"""The report: statistics and claim verdicts on hand-made numbers, then report.html of a real tiny
run and a real tiny sweep (self-contained, every figure embedded and saved as PNG and SVG)."""

from __future__ import annotations

import base64
import json
import math
import re

import pytest

from cllora import report, sweep
from cllora.cli import main
from cllora.report import NOT_SUPPORTED, NOT_TESTABLE, SUPPORTED


# ---------------------------------------------------------------- statistics (pure)

def rounds(losses, fairness=None, local=None, spread=None):
    """rounds.csv rows: losses[r] at round r; local/spread from round 1 on."""
    rows = []
    for r, loss in enumerate(losses):
        rows.append({"round": r, "global_test_loss": loss,
                     "fairness_var": None if fairness is None else fairness[r],
                     "local_models_test_loss_mean": None if local is None or r == 0 else local[r - 1],
                     "local_models_var": None if spread is None or r == 0 else spread[r - 1],
                     "bytes_cumulative": 100 * r, "round_seconds": 1.0})
    return rows


def cfg(model="m", scheme="iid", alpha=1.0, seed=0, **extra):
    return {"model": model, "scheme": scheme, "alpha": alpha, "seed": seed, "rounds": 3, "clients": 4, **extra}


def test_mean_std_curve_and_run_row():
    curve = report.mean_std_curve([[(0, 1.0), (1, 2.0)], [(0, 3.0), (1, 4.0), (2, 5.0)]])
    assert curve["x"] == [0, 1, 2] and curve["mean"] == [2.0, 3.0, 5.0] and curve["n"] == [2, 2, 1]
    assert curve["std"] == pytest.approx([math.sqrt(2), math.sqrt(2), 0.0])
    row = report.run_row("r", cfg(scheme="length", alpha=0.1),
                         rounds([3.0, 2.5, 2.2, 2.4], fairness=[0.1, 0.2, 0.3, 0.4],
                                local=[2.0, 2.2, 2.4], spread=[0.01, 0.02, 0.03]))
    assert (row["initial_loss"], row["final_loss"], row["best_loss"], row["best_round"]) == (3.0, 2.4, 2.2, 2)
    assert row["final_fairness_var"] == 0.4 and row["alpha"] == 0.1 and row["complete"]
    assert row["local_loss"] == pytest.approx(2.2) and row["local_spread"] == pytest.approx(0.02)
    assert report.run_row("i", cfg(), rounds([3.0, 2.0]))["alpha"] is None  # iid has no alpha
    assert not report.run_row("i", cfg(), rounds([3.0, 2.0]))["complete"]  # 1 of 3 rounds


def test_condition_rows_average_seeds_and_find_overfitting():
    rows = [report.run_row("a", cfg(scheme="length", alpha=0.1, seed=0), rounds([3.0, 2.0, 2.1, 2.3])),
            report.run_row("b", cfg(scheme="length", alpha=0.1, seed=1), rounds([3.0, 2.2, 2.1, 2.5])),
            report.run_row("c", cfg(seed=0), rounds([3.0, 2.5, 2.3, 2.1]))]
    conds = report.condition_rows(rows)
    assert [c["label"] for c in conds] == ["α = 0.1", "IID"]  # skewed first, IID last
    skew, iid = conds
    assert skew["n_seeds"] == 2 and skew["final_loss"] == pytest.approx(2.4)
    assert skew["final_loss_std"] == pytest.approx(math.sqrt(0.02))
    # the seed-mean curve is 3.0, 2.1, 2.1, 2.4: lowest first at round 1
    assert skew["best_round"] == 1 and skew["best_loss"] == pytest.approx(2.1)
    assert report.overfit_note(skew) == "after round 1"
    assert iid["best_round"] == 3 and report.overfit_note(iid) == "—"
    # different settings (here: clients) never mix
    other = report.run_row("d", cfg(seed=0, clients=8), rounds([3.0, 2.0]))
    assert len(report.condition_rows(rows + [other])) == 3


def cond(scheme, alpha, final, model="m", setting=None, local=None, spread=None):
    """A condition row as condition_rows makes it (only the fields the claims read)."""
    return {"setting": setting or model, "model": model, "scheme": scheme,
            "alpha": None if scheme == "iid" else alpha,
            "label": report.condition_label(scheme, None if scheme == "iid" else alpha),
            "final_loss": final, "final_loss_std": None, "local_loss": local, "local_spread": spread}


def test_claim_iid_best_and_alpha100_worst_under_quantity_skew():
    study_like = [cond("quantity", 0.1, 2.30), cond("quantity", 1.0, 2.32), cond("quantity", 100.0, 2.40),
                  cond("iid", None, 2.20)]
    iid_best = report.claim_iid_best_quantity(study_like)
    assert iid_best["verdict"] == SUPPORTED
    assert "IID 2.2000" in iid_best["evidence"][0] and "α = 100 2.4000" in iid_best["evidence"][0]
    assert report.claim_alpha100_worst_quantity(study_like)["verdict"] == SUPPORTED

    flipped = [cond("quantity", 0.1, 2.10), cond("quantity", 100.0, 2.15), cond("iid", None, 2.20)]
    assert report.claim_iid_best_quantity(flipped)["verdict"] == NOT_SUPPORTED
    assert report.claim_alpha100_worst_quantity(flipped)["verdict"] == NOT_SUPPORTED  # IID is worst

    # supported for one model, not for the other: not supported, and says so
    two = study_like + [cond("quantity", 0.1, 1.0, model="big"), cond("iid", None, 1.1, model="big")]
    mixed = report.claim_iid_best_quantity(two)
    assert mixed["verdict"] == NOT_SUPPORTED and "holds in 1 of 2 comparisons" in mixed["evidence"]

    length_only = [cond("length", 0.1, 2.3), cond("iid", None, 2.2)]
    for claim in (report.claim_iid_best_quantity, report.claim_alpha100_worst_quantity):
        assert claim(length_only)["verdict"] == NOT_TESTABLE
    assert report.claim_alpha100_worst_quantity([cond("quantity", 100.0, 2.4)])["verdict"] == NOT_TESTABLE


def test_claim_smaller_models_more_sensitive_to_length_skew():
    def model(name, spread):
        return [cond("length", 0.1, 2.0 + spread, model=name), cond("length", 100.0, 2.0, model=name),
                cond("iid", None, 2.0, model=name)]

    sizes = {"small": 100, "big": 1000}
    ok = report.claim_small_models_length_sensitive(model("small", 0.2) + model("big", 0.02), sizes)
    assert ok["verdict"] == SUPPORTED and "ρ(size, sensitivity) = -1.00" in ok["evidence"][1]
    assert report.claim_small_models_length_sensitive(
        model("small", 0.02) + model("big", 0.2), sizes)["verdict"] == NOT_SUPPORTED
    one = report.claim_small_models_length_sensitive(model("small", 0.2), sizes)
    assert one["verdict"] == NOT_TESTABLE and "at least 2 models" in one["evidence"][0]
    # (max - min) / mean over {α = 0.1, α = 100, IID}
    entry = report._by_setting(model("small", 0.3))["small"]
    assert report.length_sensitivity(entry) == pytest.approx(0.3 / 2.1)


def test_claim_quantity_hurts_fairness_more_and_length_little_local_effect():
    rows = [cond("length", 0.1, 2.0, setting="L", local=2.06, spread=0.02),
            cond("iid", None, 2.0, setting="L", local=2.00, spread=0.01),
            cond("quantity", 0.1, 2.0, setting="Q", local=2.30, spread=0.08),
            cond("iid", None, 2.0, setting="Q", local=2.00, spread=0.01)]
    fair = report.claim_quantity_fairness_worse(rows)
    assert fair["verdict"] == SUPPORTED
    assert "×8.00 under quantity skew, ×2.00 under length skew" in fair["evidence"][0]
    rows[2]["local_spread"] = 0.015
    assert report.claim_quantity_fairness_worse(rows)["verdict"] == NOT_SUPPORTED
    assert report.claim_quantity_fairness_worse(rows[:2])["verdict"] == NOT_TESTABLE

    little = report.claim_length_little_local_effect(rows)  # 2.06 vs 2.00: within 5 %
    assert little["verdict"] == SUPPORTED and "(+3.0%)" in little["evidence"][0]
    rows[0]["local_loss"] = 2.20
    assert report.claim_length_little_local_effect(rows)["verdict"] == NOT_SUPPORTED
    assert report.claim_length_little_local_effect(rows[2:])["verdict"] == NOT_TESTABLE
    claims = report.evaluate_claims(rows)
    assert len(claims) == 5 and {c["verdict"] for c in claims} <= {SUPPORTED, NOT_SUPPORTED, NOT_TESTABLE}


# ---------------------------------------------------------------- real tiny runs

@pytest.fixture(scope="module")
def tiny_sweep(tiny_model, tmp_path_factory):
    """3 clients all every round, length and quantity skew α = 0.1 and IID, 2 rounds."""
    root = tmp_path_factory.mktemp("report") / "sweep"
    spec = sweep.parse_spec({
        "sweep": {"name": "tiny-study", "description": "a tiny sweep"},
        "run": dict(model=tiny_model, dataset="sotu", max_train_examples=90, max_test_examples=16,
                    clients=3, clients_per_round=3, rounds=2, batch_size=8, max_length=48, rank=2,
                    lr=5e-3, precision="fp32", device="cpu", seed=1, local_test_fraction=0.2),
        "grid": {"scheme": ["length", "quantity", "iid"], "alpha": [0.1]}}, "tiny.toml", "tiny")
    sweep.run_sweep(spec, sweep.expand(spec), root, progress=False)
    return root


EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?(?:https?:)?//|@import""", re.I)


def check_self_contained(path):
    page = path.read_text()
    assert not EXTERNAL.search(page), EXTERNAL.search(page)
    assert "<script" not in page.lower() and "<link" not in page.lower()
    pngs = sorted((path.parent / "figures").glob("*.png"))
    assert pngs
    for png in pngs:
        assert png.with_suffix(".svg").is_file() or (png.parent / (png.name[:-4] + ".svg")).is_file()
        assert base64.b64encode(png.read_bytes()).decode() in page, f"{png.name} not embedded"
    assert page.count("data:image/png;base64,") == len(pngs)
    return page


def test_report_of_a_tiny_sweep(tiny_sweep, capsys):
    assert main(["report", str(tiny_sweep)]) == 0
    assert "report.html" in capsys.readouterr().out
    page = check_self_contained(tiny_sweep / "report.html")
    figures = {p.name for p in (tiny_sweep / "figures").iterdir()}
    for stem in ("global_loss_length", "global_loss_quantity", "fairness_length", "fairness_quantity"):
        assert {f"{stem}.png", f"{stem}.svg"} <= figures
    assert sum(n.startswith("local_") and n.endswith(".png") for n in figures) == 2
    assert sum(n.startswith("partition_") and n.endswith(".png") for n in figures) == 3
    for text in ("tiny-study", "The study's claims", "IID gives the lowest global test loss under quantity skew",
                 "smaller models are more sensitive to length skew", "not testable", "Communication cost",
                 "Best round", "length skew", "quantity skew", "OPT", "73,728"):
        assert text in page, text
    # the verdicts in the page are the ones computed from the runs
    records = [report.load_run(d, tiny_sweep) for d in report.find_run_dirs(tiny_sweep)]
    rows = [report.run_row(r.name, r.config, r.rounds) for r in records]
    claims = report.evaluate_claims(report.condition_rows(rows))
    for c in claims:
        assert f"verdict {c['verdict'].replace(' ', '-')}\">{c['verdict']}" in page
    assert claims[3]["verdict"] != NOT_TESTABLE and claims[4]["verdict"] != NOT_TESTABLE
    assert claims[2]["verdict"] == NOT_TESTABLE  # one model


def test_report_of_a_single_run(tiny_sweep, tmp_path):
    run = next(p for p in report.find_run_dirs(tiny_sweep) if p.name.startswith("quantity"))
    path = report.write_report(run, log=lambda m: None)
    assert path == run / "report.html"
    page = check_self_contained(path)
    assert "quantity skew" in page and "Partition" in page
    assert json.loads((run / "config.json").read_text())["config"]["scheme"] == "quantity"


def test_report_errors(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2
    assert "holds no cllora runs" in capsys.readouterr().err
