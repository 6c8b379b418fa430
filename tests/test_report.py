"""The report: statistics on hand-made numbers; each claim's verdict on hand-built conditions and on
hand-built run directories whose right answer is known (inverting a claim's logic fails a test);
parameter counts from config.json; then report.html of a real tiny sweep (self-contained, every
figure embedded and saved as PNG and SVG) without torch or model code."""

from __future__ import annotations

import base64
import json
import math
import re
import subprocess
import sys

import pytest

from cllora import records
from cllora.cli import main
from cllora.report import (
    NOT_SUPPORTED, NOT_TESTABLE, SUPPORTED, claims, find_run_dirs, stats, write_report,
)


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
    return {"model": model, "scheme": scheme, "alpha": alpha, "seed": seed, "rounds": 3, "clients": 4,
            "rank": 2, "targets": ["q_proj", "v_proj"], **extra}


def test_mean_std_curve_and_run_row():
    curve = stats.mean_std_curve([[(0, 1.0), (1, 2.0)], [(0, 3.0), (1, 4.0), (2, 5.0)]])
    assert curve["x"] == [0, 1, 2] and curve["mean"] == [2.0, 3.0, 5.0] and curve["n"] == [2, 2, 1]
    assert curve["std"] == pytest.approx([math.sqrt(2), math.sqrt(2), 0.0])
    row = stats.run_row("r", cfg(scheme="length", alpha=0.1),
                        rounds([3.0, 2.5, 2.2, 2.4], fairness=[0.1, 0.2, 0.3, 0.4],
                               local=[2.0, 2.2, 2.4], spread=[0.01, 0.02, 0.03]))
    assert (row["initial_loss"], row["final_loss"], row["best_loss"], row["best_round"]) == (3.0, 2.4, 2.2, 2)
    assert row["final_fairness_var"] == 0.4 and row["alpha"] == 0.1 and row["complete"]
    assert row["local_loss"] == pytest.approx(2.2) and row["local_spread"] == pytest.approx(0.02)
    assert stats.run_row("i", cfg(), rounds([3.0, 2.0]))["alpha"] is None  # iid has no alpha
    assert not stats.run_row("i", cfg(), rounds([3.0, 2.0]))["complete"]  # 1 of 3 rounds


def test_condition_rows_average_seeds_and_find_overfitting():
    rows = [stats.run_row("a", cfg(scheme="length", alpha=0.1, seed=0), rounds([3.0, 2.0, 2.1, 2.3])),
            stats.run_row("b", cfg(scheme="length", alpha=0.1, seed=1), rounds([3.0, 2.2, 2.1, 2.5])),
            stats.run_row("c", cfg(seed=0), rounds([3.0, 2.5, 2.3, 2.1]))]
    conds = stats.condition_rows(rows)
    assert [c["label"] for c in conds] == ["α = 0.1", "IID"]  # skewed first, IID last
    skew, iid = conds
    assert skew["n_seeds"] == 2 and skew["final_loss"] == pytest.approx(2.4)
    assert skew["final_loss_std"] == pytest.approx(math.sqrt(0.02))
    # the seed-mean curve is 3.0, 2.1, 2.1, 2.4: lowest first at round 1
    assert skew["best_round"] == 1 and skew["best_loss"] == pytest.approx(2.1)
    assert stats.overfit_note(skew) == "after round 1"
    assert iid["best_round"] == 3 and stats.overfit_note(iid) == "—"
    # different settings (here: clients) never mix
    other = stats.run_row("d", cfg(seed=0, clients=8), rounds([3.0, 2.0]))
    assert len(stats.condition_rows(rows + [other])) == 3


# ---------------------------------------------------------------- each claim on hand-built conditions

def cond(scheme, alpha, final, model="m", setting=None, local=None, spread=None):
    """A condition row as condition_rows makes it (only the fields the claims read)."""
    return {"setting": setting or model, "model": model, "scheme": scheme,
            "alpha": None if scheme == "iid" else alpha,
            "label": stats.condition_label(scheme, None if scheme == "iid" else alpha),
            "final_loss": final, "final_loss_std": None, "local_loss": local, "local_spread": spread}


def test_iid_best_under_quantity_skew():
    study_like = [cond("quantity", 0.1, 2.30), cond("quantity", 1.0, 2.32), cond("quantity", 100.0, 2.40),
                  cond("iid", None, 2.20)]
    supported = claims.claim_iid_best_quantity(study_like)
    assert supported["verdict"] == SUPPORTED
    assert "IID 2.2000" in supported["evidence"][0] and "α = 100 2.4000" in supported["evidence"][0]
    # IID beaten by one α (2.15 < 2.20): not supported
    flipped = [cond("quantity", 0.1, 2.30), cond("quantity", 1.0, 2.15), cond("iid", None, 2.20)]
    assert claims.claim_iid_best_quantity(flipped)["verdict"] == NOT_SUPPORTED
    # supported for one model, not for the other: not supported, and says so
    two = study_like + [cond("quantity", 0.1, 1.0, model="big"), cond("iid", None, 1.1, model="big")]
    mixed = claims.claim_iid_best_quantity(two)
    assert mixed["verdict"] == NOT_SUPPORTED and "holds in 1 of 2 comparisons" in mixed["evidence"]
    length_only = [cond("length", 0.1, 2.3), cond("iid", None, 2.2)]
    assert claims.claim_iid_best_quantity(length_only)["verdict"] == NOT_TESTABLE


def test_alpha100_worst_under_quantity_skew():
    worst = [cond("quantity", 0.1, 2.30), cond("quantity", 100.0, 2.40), cond("iid", None, 2.20)]
    assert claims.claim_alpha100_worst_quantity(worst)["verdict"] == SUPPORTED
    # IID (2.20) is worse than α = 100 (2.15): not supported
    iid_worst = [cond("quantity", 0.1, 2.10), cond("quantity", 100.0, 2.15), cond("iid", None, 2.20)]
    assert claims.claim_alpha100_worst_quantity(iid_worst)["verdict"] == NOT_SUPPORTED
    assert claims.claim_alpha100_worst_quantity([cond("quantity", 100.0, 2.4)])["verdict"] == NOT_TESTABLE
    no_100 = [cond("quantity", 0.1, 2.4), cond("iid", None, 2.2)]
    assert claims.claim_alpha100_worst_quantity(no_100)["verdict"] == NOT_TESTABLE


def length_conditions(name, spread):
    """Length-skew α = 0.1 ends `spread` above α = 100 and IID (both 2.0)."""
    return [cond("length", 0.1, 2.0 + spread, model=name), cond("length", 100.0, 2.0, model=name),
            cond("iid", None, 2.0, model=name)]


def test_smaller_models_more_sensitive_to_length_skew():
    sizes = {"small": 100_000_000, "big": 1_000_000_000}
    ok = claims.claim_small_models_length_sensitive(
        length_conditions("small", 0.2) + length_conditions("big", 0.02), model_sizes=sizes)
    assert ok["verdict"] == SUPPORTED and "ρ(size, sensitivity) = -1.00" in ok["evidence"][1]
    assert "small (100 M params)" in ok["evidence"][0]
    reversed_ = claims.claim_small_models_length_sensitive(
        length_conditions("small", 0.02) + length_conditions("big", 0.2), model_sizes=sizes)
    assert reversed_["verdict"] == NOT_SUPPORTED
    one = claims.claim_small_models_length_sensitive(length_conditions("small", 0.2), model_sizes=sizes)
    assert one["verdict"] == NOT_TESTABLE and "at least 2 models" in one["evidence"][0]
    unknown_size = claims.claim_small_models_length_sensitive(
        length_conditions("small", 0.2) + length_conditions("big", 0.02), model_sizes={"small": 1})
    assert unknown_size["verdict"] == NOT_TESTABLE
    # (max - min) / mean over {α = 0.1, α = 100, IID}
    entry = stats.by_setting(length_conditions("small", 0.3))["small"]
    assert stats.length_sensitivity(entry) == pytest.approx(0.3 / 2.1)


def fairness_conditions(length_spread, quantity_spread, length_local=2.0):
    """Length and quantity skew at α = 0.1, each beside an IID run (local loss 2.0, spread 0.01)."""
    return [cond("length", 0.1, 2.0, setting="L", local=length_local, spread=length_spread),
            cond("iid", None, 2.0, setting="L", local=2.00, spread=0.01),
            cond("quantity", 0.1, 2.0, setting="Q", local=2.30, spread=quantity_spread),
            cond("iid", None, 2.0, setting="Q", local=2.00, spread=0.01)]


def test_quantity_skew_hurts_fairness_more():
    worse = claims.claim_quantity_fairness_worse(fairness_conditions(0.02, 0.08))
    assert worse["verdict"] == SUPPORTED
    assert "×8.00 under quantity skew, ×2.00 under length skew" in worse["evidence"][0]
    # quantity ×1.5 below length ×2: not supported
    assert claims.claim_quantity_fairness_worse(fairness_conditions(0.02, 0.015))["verdict"] == NOT_SUPPORTED
    assert claims.claim_quantity_fairness_worse(fairness_conditions(0.02, 0.08)[:2])["verdict"] == NOT_TESTABLE


def test_length_skew_little_local_effect():
    little = claims.claim_length_little_local_effect(fairness_conditions(0.02, 0.08, length_local=2.06))
    assert little["verdict"] == SUPPORTED and "(+3.0%)" in little["evidence"][0]
    for far in (2.20, 1.80):  # 10 % worse or better: not "little"
        assert claims.claim_length_little_local_effect(
            fairness_conditions(0.02, 0.08, length_local=far))["verdict"] == NOT_SUPPORTED
    assert claims.claim_length_little_local_effect(
        fairness_conditions(0.02, 0.08)[2:])["verdict"] == NOT_TESTABLE


def test_claims_come_in_a_fixed_order():
    found = claims.evaluate_claims(fairness_conditions(0.02, 0.08, length_local=2.06))
    assert [c["claim"] for c in found] == [
        "IID gives the lowest global test loss under quantity skew", "α = 100 is worst under quantity skew",
        "smaller models are more sensitive to length skew", "quantity skew hurts fairness more than length skew",
        "length skew has little effect on local training"]
    # IID ties quantity skew (2.0): not the lowest; no α = 100; one model
    assert [c["verdict"] for c in found] == [NOT_SUPPORTED, NOT_TESTABLE, NOT_TESTABLE, SUPPORTED, SUPPORTED]


# ---------------------------------------------------------------- hand-built run directories

CLAIM_NAMES = {"IID gives the lowest global test loss under quantity skew": "iid_best",
               "α = 100 is worst under quantity skew": "alpha100_worst",
               "smaller models are more sensitive to length skew": "small_sensitive",
               "quantity skew hurts fairness more than length skew": "quantity_unfair",
               "length skew has little effect on local training": "length_little"}


def write_run(path, model, scheme, alpha, final, local=2.0, spread=0.01, params=None):
    """A run directory as the engine writes it, 2 rounds: loss 3.0 → (3.0 + final) / 2 → final."""
    config = {"model": model, "dataset": "sotu", "scheme": scheme, "alpha": alpha or 1.0, "seed": 0,
              "rounds": 2, "clients": 4, "clients_per_round": 4, "rank": 2, "lora_alpha": 4.0,
              "targets": ["q_proj", "v_proj"]}
    meta = {"precision": "fp32", "device": "cpu", "adapter_bytes": 4 * (params or (1000, 0))[0]}
    if params:
        meta.update(trainable_params=params[0], total_params=params[1])
    path.mkdir(parents=True)
    records.write_json(path / "config.json", {"config": config, **meta})
    rows = [{"round": r, "global_test_loss": loss, "fairness_var": 0.01,
             "local_models_test_loss_mean": local if r else None,
             "local_models_var": spread if r else None, "bytes_cumulative": 8000 * r, "round_seconds": 1.0}
            for r, loss in enumerate((3.0, (3.0 + final) / 2, final))]
    records.write_csv(path / "rounds.csv", records.ROUND_COLUMNS, rows)
    records.write_json(path / "summary.json", {"rounds_completed": 2})


def write_study(root, flipped: bool, big_params=(2_000, 1_000_000_000)):
    """Two models, each with IID (final 2.00, local 2.00, spread 0.01) and length / quantity skew at
    α = 0.1 and 100. Unflipped: IID best and α = 100 not worst under quantity skew; the small model
    more length-sensitive; quantity skew's spread ×1.5 IID's vs length's ×2; length skew's local
    loss +2 %. Flipped: every one of these the other way round."""
    sizes = {"small": (1_000, 100_000_000), "big": big_params}
    for model in ("small", "big"):
        sensitive = (model == "small") != flipped
        runs = {("iid", None): dict(final=2.00),
                ("length", 0.1): dict(final=2.40 if sensitive else 2.02, spread=0.02,
                                      local=2.30 if flipped else 2.04),
                ("length", 100.0): dict(final=2.00),
                ("quantity", 0.1): dict(final=1.90 if flipped else 2.30, spread=0.08 if flipped else 0.015),
                ("quantity", 100.0): dict(final=2.20 if flipped else 2.10)}
        for (scheme, alpha), numbers in runs.items():
            name = f"{model}/{scheme}" + (f"-a{alpha:g}" if alpha else "")
            write_run(root / name, model, scheme, alpha, params=sizes[model], **numbers)


def page_verdicts(page: str) -> dict[str, str]:
    """{claim's short name: verdict} as the page's claims table shows them, each on its claim's row."""
    found = re.findall(r'<tr><td>([^<]+) <span class="small">\([^)]*\)</span></td>'
                       r'<td><span class="verdict ([a-z-]+)">([a-z ]+)</span>', page)
    assert all(css == verdict.replace(" ", "-") for _, css, verdict in found)
    assert sorted(claim for claim, _, _ in found) == sorted(CLAIM_NAMES), found
    return {CLAIM_NAMES[claim]: verdict for claim, _, verdict in found}


@pytest.mark.parametrize("flipped", [False, True])
def test_report_verdicts_of_hand_built_runs(tmp_path, flipped):
    write_study(tmp_path, flipped)
    page = write_report(tmp_path, log=lambda m: None).read_text()
    expected = {"iid_best": SUPPORTED, "alpha100_worst": NOT_SUPPORTED, "small_sensitive": SUPPORTED,
                "quantity_unfair": NOT_SUPPORTED, "length_little": SUPPORTED}
    if flipped:
        expected = {k: NOT_SUPPORTED if v == SUPPORTED else SUPPORTED for k, v in expected.items()}
    assert page_verdicts(page) == expected


def test_parameter_counts_come_from_config_json(tmp_path):
    write_study(tmp_path, flipped=False, big_params=None)  # "big" recorded before counts existed
    page = write_report(tmp_path, log=lambda m: None).read_text()
    cost = page[page.index('id="cost"'):page.index("The study's Table 1")]
    small = re.search(r"<tr><td>small</td>(.*?)</tr>", cost).group(1)
    assert re.findall(r'<td class="num">([^<]*)</td>', small) == [
        "2", "1,000", "100,000,000", "0.0010 %", "0.004", "0.004", "0.016"]
    big = re.search(r"<tr><td>big</td>(.*?)</tr>", cost).group(1)
    assert re.findall(r'<td class="num">([^<]*)</td>', big)[1:6] == ["—", "—", "—", "—", "0.004"]
    # without the big model's size, model size cannot be related to sensitivity
    assert page_verdicts(page)["small_sensitive"] == NOT_TESTABLE
    assert "73,728" in page and "125,313,024" in page  # the study's Table 1 for reference


def test_the_report_imports_no_torch_or_model_code(tmp_path):
    write_study(tmp_path, flipped=False)
    code = ("import sys; from cllora.report import write_report; write_report(sys.argv[1], log=lambda m: None); "
            "loaded = [m for m in ('torch', 'transformers', 'peft', 'cllora.model', 'cllora.engine') "
            "if m in sys.modules]; print(loaded)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- real tiny runs

GRID = """
[sweep]
name = "tiny-study"
description = "a tiny sweep"
[run]
model = "{model}"
dataset = "sotu"
max_train_examples = 90
max_test_examples = 16
clients = 3
clients_per_round = 3
rounds = 2
batch_size = 8
max_length = 48
rank = 2
lr = 5e-3
precision = "fp32"
device = "cpu"
seed = 1
local_test_fraction = 0.2
[grid]
scheme = ["length", "quantity", "iid"]
alpha = [0.1]
"""


@pytest.fixture(scope="module")
def tiny_sweep(tiny_model, tmp_path_factory):
    """3 clients all every round, length and quantity skew α = 0.1 and IID, 2 rounds."""
    base = tmp_path_factory.mktemp("report")
    (base / "tiny.toml").write_text(GRID.format(model=tiny_model))
    root = base / "sweep"
    assert main(["sweep", "--config", str(base / "tiny.toml"), "--out", str(root), "--quiet", "--no-report"]) == 0
    return root


EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?(?:https?:)?//|@import""", re.I)


def check_self_contained(path):
    page = path.read_text()
    assert not EXTERNAL.search(page), EXTERNAL.search(page)
    assert "<script" not in page.lower() and "<link" not in page.lower()
    pngs = sorted((path.parent / "figures").glob("*.png"))
    assert pngs
    for png in pngs:
        svg = png.with_suffix(".svg").read_text()
        assert svg.startswith("<?xml") and "<dc:date>" not in svg  # undated: same figure, same file
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
    for text in ("tiny-study", "a tiny sweep", "The study's claims", "Communication cost",
                 "Best round", "length skew", "quantity skew"):
        assert text in page, text
    verdicts = page_verdicts(page)
    # one model: sizes cannot be compared; no α = 100: the α = 100 claim cannot be tested
    assert verdicts["small_sensitive"] == NOT_TESTABLE and verdicts["alpha100_worst"] == NOT_TESTABLE
    # IID, length and quantity skew with local evaluations: these three are decided either way
    for name in ("iid_best", "quantity_unfair", "length_little"):
        assert verdicts[name] in (SUPPORTED, NOT_SUPPORTED), name
    # the cost table shows the parameter counts the engine recorded in config.json ("—" if none)
    meta = records.read_json(find_run_dirs(tiny_sweep)[0] / "config.json")
    cost = page[page.index('id="cost"'):page.index("The study's Table 1")]
    cells = re.findall(r'<td class="num">([^<]*)</td>', re.search(r"<tr><td>tiny.*?</tr>", cost).group(0))
    assert cells[1:3] == [f"{meta[k]:,}" if k in meta else "—" for k in ("trainable_params", "total_params")]


def test_report_of_a_single_run(tiny_sweep, tmp_path):
    run = next(p for p in find_run_dirs(tiny_sweep) if p.name.startswith("quantity"))
    path = write_report(run, log=lambda m: None)
    assert path == run / "report.html"
    page = check_self_contained(path)
    assert "quantity skew" in page and "Partition" in page
    assert json.loads((run / "config.json").read_text())["config"]["scheme"] == "quantity"


def test_report_errors(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2
    assert "holds no cllora runs" in capsys.readouterr().err
