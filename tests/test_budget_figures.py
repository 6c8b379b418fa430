"""The study-budget figures (cllora.analysis.budget_figures, cllora.report.budget_figures): curves
without the sampling noise between seeds' test samples, paired differences, only complete planned
runs, and the script that writes them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cllora.analysis.budget_figures import FIGURES, figure_data, panel_rows
from cllora.analysis.plans import Plan, Sweep
from cllora.analysis.runs import RunRecord
from cllora.report.budget_figures import write_study_figures

FIG6 = next(f for f in FIGURES if f.key == "fig6")
FIG8 = next(f for f in FIGURES if f.key == "fig8")
ROOT = Path(__file__).resolve().parents[1]


def run(folder: str, scheme: str, alpha, seed: int, losses, *, planned=(0, 1, 2), complete=True,
        clients=(), spread=None, **config) -> RunRecord:
    rounds = [{"round": r, "global_test_loss": v,
               "local_models_var_corrected": None if spread is None or r == 0 else spread[r - 1]}
              for r, v in enumerate(losses)]
    cfg = {"model": "smollm2-135m", "scheme": scheme, "alpha": alpha or 1.0, "seed": seed,
           "rounds": len(losses) - 1, **config}
    plan = Plan(sweep=folder, seeds=tuple(planned))
    return RunRecord(name=f"{folder}/{scheme}-{alpha}-s{seed}", path=Path("."), config=cfg, meta={},
                     rounds=rounds, clients=list(clients), partition=None,
                     summary={"rounds_completed": len(losses) - 1 if complete else 0},
                     sweep=Sweep(folder, folder, "study", plan))


def by_label(row: list[dict]) -> dict[str, dict]:
    return {c["label"].split(" (n=")[0]: c for c in row}


def test_curves_leave_out_each_seeds_test_level_and_pair_by_seed():
    # seed 1's test texts score 1 nat higher at every round: same training, another test sample
    runs = [run("study-length-study", "iid", None, 0, [3.0, 2.8, 2.7]),
            run("study-length-study", "iid", None, 1, [4.0, 3.8, 3.7]),
            run("study-length-study", "length", 0.1, 0, [3.0, 2.9, 2.9]),
            run("study-length-study", "length", 0.1, 1, [4.0, 3.9, 3.9])]
    change, paired = panel_rows(runs, FIG6.panels[1], FIG6)
    iid = by_label(change)["IID"]
    assert iid["mean"] == pytest.approx([0.0, -0.2, -0.3]) and iid["half"] == pytest.approx([0.0, 0.0, 0.0])
    assert iid["n"] == [2, 2, 2]
    diff = by_label(paired)["α = 0.1"]
    assert diff["mean"] == pytest.approx([0.0, 0.1, 0.2]) and max(diff["half"]) == pytest.approx(0.0)
    assert "IID" not in by_label(paired)  # IID against itself is the dashed zero line


def test_only_complete_runs_of_planned_seeds_and_the_panels_setting_are_drawn():
    runs = [run("study-null", "iid", None, s, [3.0, 2.0 + s / 10], replicate=0) for s in (0, 1, 2)]
    runs += [run("study-null", "iid", None, 0, [3.0, 9.0], replicate=1),  # another setting of the folder
             run("study-null", "iid", None, 5, [3.0, 9.0], replicate=0),  # an extension's seed
             run("study-null", "iid", None, 2, [3.0, 9.0], replicate=0, complete=False),
             run("study-quantity", "iid", None, 0, [3.0, 9.0])]  # another sweep
    runs[2:3] = []  # seed 2's only run is the incomplete one
    iid = by_label(panel_rows(runs, FIG6.panels[0], FIG6)[0])["IID"]
    assert iid["n"] == [2, 2] and iid["mean"] == pytest.approx([0.0, -0.95])


def test_local_figure_draws_the_smallest_alpha_against_iid():
    def clients(base: float, local: list[float]):
        rows = [{"round": 0, "client_id": c, "global_model_local_test_loss": base + c} for c in range(2)]
        return rows + [{"round": r + 1, "client_id": c, "local_model_test_loss": base + c + v}
                       for r, v in enumerate(local) for c in range(2)]
    runs = [run("study-local-study", "iid", None, 0, [3, 3, 3], clients=clients(3.0, [-0.1, -0.2]),
                spread=[0.01, 0.0]),
            run("study-local-study", "length", 0.1, 0, [3, 3, 3], clients=clients(5.0, [-0.3, 0.1]),
                spread=[0.05, 0.02]),
            run("study-local-study", "length", 1.0, 0, [3, 3, 3], clients=clients(3.0, [0, 0]), spread=[0, 0])]
    local, spread = panel_rows(runs, FIG8.panels[1], FIG8)
    assert set(by_label(local)) == {"α = 0.1", "IID"}
    assert by_label(local)["α = 0.1"]["x"] == [1, 2]
    assert by_label(local)["α = 0.1"]["mean"] == pytest.approx([-0.3, 0.1])
    assert by_label(spread)["IID"]["mean"] == pytest.approx([0.01, 0.0])


def test_every_figure_is_written_and_a_sweep_not_run_yet_is_said(tmp_path):
    runs = [run("study-null", s, a, 0, [3.0, 2.9, 2.8], replicate=0) for s, a in (("iid", None), ("length", 0.1))]
    data = figure_data(runs, FIG6)
    assert [p["seeds"] for p in data["panels"]] == [1, 0]
    assert (data["panels"][0]["fewest"], data["panels"][0]["planned"]) == (1, 3)  # "so far 1 of 3 planned seeds"
    paths = write_study_figures(runs, tmp_path)
    assert [p.name for p in paths] == [f"study-budget-{f.key}.png" for f in FIGURES]
    assert all(p.stat().st_size > 10_000 for p in paths)


def test_the_script_refuses_a_missing_folder_with_exit_2(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "study_budget_figures.py"),
                           str(tmp_path / "missing"), str(tmp_path / "out")], capture_output=True, text=True)
    assert done.returncode == 2 and "is not a folder of runs" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()
