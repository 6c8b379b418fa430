"""Plans before runs (cllora.analysis.plans): plan.toml is parsed and checked (bad values name
themselves), `cllora sweep --plan` copies it into the sweep folder before the first cell runs and
refuses a folder whose plan differs (exit 2), verdicts use exactly the planned seeds and show seeds
beyond the plan as an extension without a verdict, and on simulated null data the extend-and-look
behaviour of a sweep holds its nominal rate under that rule (and does not without it)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cllora import records
from cllora.analysis.plans import EXTENSION, parse_plan, read_plan, run_fields, Sweep
from cllora.analysis.stats import CONTRADICTED, INCONCLUSIVE, SUPPORTED
from cllora.analysis.verdicts import estimate
from cllora.cli import main
from cllora.errors import UserError

PLAN = """[plan]
sweep = "t"
written = "2026-12-06T17:40:00Z"
seeds = [0, 1, 2]
design = "fixed"
level = 0.95
pilot = "a pilot"
reconstructed = false

[[claims]]
id = "length_skew_hurts"
headline = "t"
family = "holm"
margin = 0.0
unit = "nats"
planning_sd = 0.01
"""


def write(path, text):
    path.write_text(text)
    return path


def test_a_plan_is_read_with_its_claims(tmp_path):
    plan = read_plan(write(tmp_path / "plan.toml", PLAN))
    assert plan.seeds == (0, 1, 2) and plan.design == "fixed" and not plan.reconstructed
    assert plan.claims["length_skew_hurts"].planning_sd == 0.01 and plan.claims["length_skew_hurts"].family == "holm"


@pytest.mark.parametrize("edit, message", [
    (("seeds = [0, 1, 2]", "seeds = [0, 0, 1]"), "seeds must be a non-empty list of distinct"),
    (("seeds = [0, 1, 2]", 'seeds = "0,1,2"'), "seeds must be a list"),
    (('design = "fixed"', 'design = "sequential"'), "sequential design with alpha spending is not offered"),
    (("level = 0.95", "level = 95"), "level must lie between 0.5 and 1"),
    (("reconstructed = false", 'reconstructed = "no"'), "reconstructed must be true or false"),
    (('family = "holm"', 'family = "bonferroni"'), "family must be one of holm, intersection-union"),
    (("planning_sd = 0.01", "planning_sd = -0.01"), "planning_sd must be a positive finite number"),
    (("planning_sd = 0.01", 'planning_sd = "0.01"'), "planning_sd must be a number"),
    (('sweep = "t"', 'sweeps = "t"'), "unknown key"),
])
def test_bad_plans_name_the_bad_value(tmp_path, edit, message):
    with pytest.raises(UserError, match=message):
        read_plan(write(tmp_path / "plan.toml", PLAN.replace(*edit)))


def test_sweep_plan_flag_bad_input_exits_2(tmp_path, capsys):
    base = ["sweep", "--preset", "study-length", "--quick", "--dry-run", "--out", str(tmp_path / "s")]
    assert main(base + ["--plan", str(write(tmp_path / "bad.toml", PLAN.replace("seeds = [0, 1, 2]", "seeds = 3")))]) == 2
    assert "seeds must be a list" in capsys.readouterr().err
    assert main(base + ["--plan", str(write(tmp_path / "broken.toml", "[plan\n"))]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    assert main(base + ["--plan", str(tmp_path / "missing.toml")]) == 2
    assert main(base + ["--plan", str(write(tmp_path / "ok.toml", PLAN))]) == 0
    assert not (tmp_path / "s" / "plan.toml").exists()  # a dry run writes nothing


def _fake_sweep(monkeypatch, seen):
    import cllora.model
    import cllora.runner

    monkeypatch.setattr(cllora.model, "load_tokenizer", lambda name, log=print: object())
    monkeypatch.setattr(cllora.model, "load_model", lambda name, *a, **k: None)

    def fake_run(config, out, **kwargs):
        seen.append((out.parents[1] / "plan.toml").is_file())  # the plan is there before any cell runs
        out.mkdir(parents=True, exist_ok=True)
        records.write_config(out, config, {})
        records.write_json(out / "summary.json", {"rounds_completed": config.rounds, "final_test_loss": 1.0})
        return {}

    monkeypatch.setattr(cllora.runner, "run_experiment", fake_run)


def test_sweep_copies_the_plan_before_the_first_cell_and_refuses_another(tmp_path, monkeypatch, capsys):
    seen: list[bool] = []
    _fake_sweep(monkeypatch, seen)
    grid_file = write(tmp_path / "g.toml", '[sweep]\nname = "t"\n[run]\ndevice = "cpu"\n[grid]\n'
                                           'scheme = ["iid"]\nseed = [0, 1, 2]\n')
    out = tmp_path / "s"
    cmd = ["sweep", "--config", str(grid_file), "--out", str(out), "--no-report", "--quiet"]
    assert main(cmd + ["--plan", str(write(tmp_path / "p.toml", PLAN))]) == 0
    assert seen == [True, True, True]
    assert read_plan(out / "plan.toml").content() == read_plan(tmp_path / "p.toml").content()
    assert main(cmd + ["--plan", str(tmp_path / "p.toml")]) == 0  # the same plan again: fine
    other = write(tmp_path / "q.toml", PLAN.replace("seeds = [0, 1, 2]", "seeds = [0, 1, 2, 3, 4]"))
    assert main(cmd + ["--plan", str(other)]) == 2
    assert "holds a different plan" in capsys.readouterr().err
    assert read_plan(out / "plan.toml").seeds == (0, 1, 2)  # untouched
    # a plan for another sweep, and a plan for a folder that already ran without one
    assert main(cmd + ["--plan", str(write(tmp_path / "r.toml", PLAN.replace('sweep = "t"', 'sweep = "u"')))]) == 2
    assert "is for sweep 'u'" in capsys.readouterr().err
    (out / "plan.toml").unlink()
    assert main(cmd + ["--plan", str(tmp_path / "p.toml")]) == 2
    assert "already holds runs of this sweep and no plan" in capsys.readouterr().err


def _conds(values: list[dict[int, float]], plan_seeds=(0, 1, 2), kind="planned"):
    """Condition rows of final losses per seed, run by a sweep whose plan lists `plan_seeds`."""
    sweep = Sweep("t", "t", "quick", parse_plan({"plan": {"sweep": "t", "seeds": list(plan_seeds),
                                                          "reconstructed": kind == "reconstructed"}}))
    return [{"runs": [{"seed": s, "complete": True, "final_loss": v, **run_fields(sweep, s)}
                      for s, v in vals.items()]} for vals in values]


def diff(m):
    return m[0] - m[1]


def test_only_planned_seeds_decide_and_the_extension_is_labelled():
    # seeds 0-2 planned and inconclusive; seeds 3-4 added later would make it supported
    skewed = {0: 3.02, 1: 2.995, 2: 3.03, 3: 3.025, 4: 3.03}
    base = {s: 3.0 for s in skewed}
    est = estimate(_conds([skewed, base]), "final_loss", diff)
    assert est["seeds"] == 3 and est["verdict"] == INCONCLUSIVE and est["plan"] == "planned"
    assert est["extension"]["label"] == EXTENSION and est["extension"]["seeds"] == 5
    assert est["extension"]["low"] > 0  # the extension alone would have said supported
    everything = estimate(_conds([skewed, base], plan_seeds=(0, 1, 2, 3, 4)), "final_loss", diff)
    assert everything["verdict"] == SUPPORTED and everything["extension"] is None


def test_a_planned_seed_not_run_leaves_no_verdict():
    values = [{0: 3.1, 1: 3.1, 2: 3.1}, {0: 3.0, 1: 3.0, 2: 3.0}]
    est = estimate(_conds(values, plan_seeds=(0, 1, 2, 3)), "final_loss", lambda m: m[0] - m[1] + 0 * m[0])
    assert est["verdict"] == INCONCLUSIVE and "planned seed(s) 3 not run" in est["method"]


def test_without_a_plan_the_seeds_are_said_to_be_unplanned():
    rows = [{"runs": [{"seed": s, "complete": True, "final_loss": 3.0 + 0.01 * s} for s in range(3)]},
            {"runs": [{"seed": s, "complete": True, "final_loss": 3.0} for s in range(3)]}]
    assert estimate(rows, "final_loss", diff)["plan"] == "not planned"


def _extend_and_look(rng, reps: int, looks=(3, 5), planned=3) -> tuple[float, float]:
    """A sweep on null data that looks at 3 seeds and, when that is inconclusive, adds seeds up to 5
    and looks again (what the published long-context and strategies sweeps did). Share of false
    verdicts: under the plan rule (planned seeds decide, the rest is an extension), and when the last
    look's seeds decided instead."""
    under_rule, naive = 0, 0
    for _ in range(reps):
        level = rng.normal(3.5, 0.06, looks[-1])
        values = [{s: float(level[s] + rng.normal(0, 0.01)) for s in range(looks[-1])} for _ in range(2)]
        decided = False
        for n in looks:
            seen = [{s: v for s, v in vals.items() if s < n} for vals in values]
            est = estimate(_conds(seen, plan_seeds=range(planned)), "final_loss", diff)
            naive_est = estimate(_conds(seen, plan_seeds=range(n)), "final_loss", diff)
            if naive_est["verdict"] in (SUPPORTED, CONTRADICTED):
                decided = True
                break
        naive += decided
        under_rule += est["verdict"] in (SUPPORTED, CONTRADICTED)
    return under_rule / reps, naive / reps


def test_extend_and_look_holds_the_nominal_rate_under_the_plan_rule():
    rule, naive = _extend_and_look(np.random.default_rng(30), 3000, looks=(3, 4, 5))
    assert rule <= 0.055, rule
    assert rule >= 0.03, rule  # the planned look is used at its level, not never
    assert naive > 0.075, naive  # look at 3, 4, then 5 without the rule: ~10 % (issue 30)


def test_published_plans_say_whether_reconstructed_and_real_ones_predate_their_sweep():
    from pathlib import Path

    results = Path(__file__).resolve().parents[1] / "results"
    folders = [p.parent for p in results.glob("*/index.json")]
    if not folders:
        pytest.skip("no published results in this checkout")
    planned = set()
    for folder in folders:
        plan = read_plan(folder / "plan.toml")
        head = json.loads((folder / "index.json").read_text())["sweep"]
        assert plan.note and plan.sweep == head["name"], folder
        if plan.reconstructed:
            continue
        # a real plan was written before the sweep's first cell (index.json's `created`, UTC here)
        assert plan.written.rstrip("Z") < head["created"], folder
        planned.add(folder.name)
    assert planned <= {"study-length-study", "study-quantity-study", "study-local-study", "study-size-study"}
    assert read_plan(results / "study-long-context" / "plan.toml").seeds == (0, 1, 2)
    assert read_plan(results / "study-strategies" / "plan.toml").seeds == (0, 1, 2)
