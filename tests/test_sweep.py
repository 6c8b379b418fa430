"""Sweeps: grid expansion (iid ignores alpha, per-model settings, --quick, overrides), bad grids,
and a real tiny sweep: one model load per sweep, index, skip finished cells, resume unfinished ones."""

from __future__ import annotations

import csv
import json

import pytest

from cllora import records, sweep
from cllora.cli import main
from cllora.errors import RunFailed, UserError
from cllora.engine import run_experiment


def spec(grid: dict, run: dict | None = None, **tables) -> sweep.GridSpec:
    return sweep.parse_spec({"run": run or {}, "grid": grid, **tables}, "test grid", "t")


def names(cells):
    return [c.name for c in cells]


# ---------------------------------------------------------------- expansion

def test_iid_collapses_alpha_into_one_cell_per_seed():
    cells = sweep.expand(spec({"scheme": ["length", "iid"], "alpha": [0.1, 1, 100], "seed": [0, 1]}))
    assert names(cells) == [
        "smollm2-135m/length-a0.1-s0", "smollm2-135m/length-a0.1-s1",
        "smollm2-135m/length-a1-s0", "smollm2-135m/length-a1-s1",
        "smollm2-135m/length-a100-s0", "smollm2-135m/length-a100-s1",
        "smollm2-135m/iid-s0", "smollm2-135m/iid-s1"]
    assert [c.config.alpha for c in cells[:6:2]] == [0.1, 1.0, 100.0]
    iid = cells[-1]
    assert iid.config.scheme == "iid" and "alpha" not in iid.axes and iid.config.seed == 1


def test_per_model_settings_model_major_order_and_slugs():
    s = spec({"model": ["facebook/opt-125m", "smollm2-135m"], "scheme": ["quantity"], "alpha": [0.5]},
             run={"local_epochs": 2, "rounds": 4},
             per_model={"facebook/opt-125m": {"local_epochs": 5}, "unused-model": {"lr": 0.1}})
    cells = sweep.expand(s)
    assert names(cells) == ["opt-125m/quantity-a0.5-s0", "smollm2-135m/quantity-a0.5-s0"]
    assert [c.config.local_epochs for c in cells] == [5, 2]
    assert all(c.config.rounds == 4 and c.config.lr == 5e-4 for c in cells)


def test_other_varying_axes_appear_in_names_and_values_are_typed():
    cells = sweep.expand(spec({"lr": [1e-3, 5e-4], "local_epochs": [1]}, run={"scheme": "iid"}))
    assert names(cells) == ["smollm2-135m/iid-lr0.001-s0", "smollm2-135m/iid-lr0.0005-s0"]
    assert cells[0].config.local_epochs == 1


def test_quick_patch_and_overrides():
    data = {"sweep": {"name": "demo"}, "run": {"rounds": 10, "max_train_examples": 2000},
            "grid": {"scheme": ["length", "iid"], "alpha": [0.1, 1]},
            "per_model": {"smollm2-135m": {"local_epochs": 5}},
            "quick": {"run": {"rounds": 2}, "grid": {"alpha": [0.1]},
                      "per_model": {"smollm2-135m": {"local_epochs": 1}}}}
    full = sweep.parse_spec(data, "demo.toml", "demo")
    quick = sweep.parse_spec(data, "demo.toml", "demo", quick=True)
    assert full.name == "demo" and quick.name == "demo-quick"
    assert len(sweep.expand(full)) == 3
    q = sweep.expand(quick)
    assert names(q) == ["smollm2-135m/length-a0.1-s0", "smollm2-135m/iid-s0"]
    assert {(c.config.rounds, c.config.local_epochs, c.config.max_train_examples) for c in q} == {(2, 1, 2000)}
    # a command-line value of a grid key fixes that axis; --grid adds or replaces one
    fixed = sweep.expand(full, overrides={"scheme": "length", "rounds": 3},
                         grid_overrides={"seed": [0, 1]})
    assert names(fixed) == ["smollm2-135m/length-a0.1-s0", "smollm2-135m/length-a0.1-s1",
                            "smollm2-135m/length-a1-s0", "smollm2-135m/length-a1-s1"]
    assert all(c.config.rounds == 3 for c in fixed)
    assert sweep.parse_grid_flag("model=a,b") == ("model", ["a", "b"])
    assert sweep.parse_grid_flag("alpha=0.1,1") == ("alpha", [0.1, 1])


@pytest.mark.parametrize("data, message", [
    ({"grid": {"alfa": [0.1]}}, "[grid] key 'alfa' is not a run setting (did you mean 'alpha'?)"),
    ({"grid": {"alpha": 0.1}}, "[grid] alpha must be a non-empty list of values, e.g. alpha = [0.1]"),
    ({"grid": {"seed": []}}, "[grid] seed must be a non-empty list"),
    ({"grid": {"alpha": [0.1, -1], "scheme": ["length"]}}, "the cell with alpha=-1, scheme=length is not "
                                                          "a valid run: alpha must be a number > 0"),
    ({"run": {"alpha": 1}, "grid": {"alpha": [0.1]}}, "alpha is set in both [run] and [grid]"),
    ({"alpha": 0.1}, "unknown table or key 'alpha' (run settings go in [run]"),
    ({"runs": {}}, "unknown table or key 'runs' (did you mean 'run'?)"),
    ({"grid": {"model": ["a"]}, "per_model": {"a": {"model": "b"}}}, "per-model settings may only set"),
    ({"run": {"clients": 2}, "grid": {"clients_per_round": [1, 3]}}, "clients_per_round must be <= clients"),
])
def test_bad_grids_are_one_clear_sentence(data, message):
    with pytest.raises(UserError) as info:
        sweep.expand(sweep.parse_spec(data, "g.toml", "g"))
    assert message in str(info.value)


def test_cli_bad_grid_exits_2_and_dry_run_lists_cells(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[grid]\nalfa = [0.1, 1]\n")
    assert main(["sweep", "--config", str(bad), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'alpha'" in err and "Traceback" not in err
    assert main(["sweep", "--preset", "study-lenght", "--dry-run"]) == 2
    assert "did you mean 'study-length'" in capsys.readouterr().err
    assert main(["sweep", "--config", str(bad), "--preset", "study-length"]) == 2
    assert "exactly one of --config" in capsys.readouterr().err
    assert main(["sweep", "--preset", "study-length", "--quick", "--dry-run", "--out", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "4 cells" in out and "smollm2-135m/length-a0.1-s0" in out and "smollm2-135m/iid-s0" in out


def test_presets_mirror_the_study():
    assert {"study-length", "study-quantity", "study-local"} <= set(sweep.preset_names())
    expect = {"study-length": (20, 2, "length", 4), "study-quantity": (10, 2, "quantity", 4),
              "study-local": (3, 3, None, 3)}
    for name, (clients, k, scheme, ncells) in expect.items():
        for quick in (False, True):
            s = sweep.load_spec(preset=name, quick=quick)
            cells = sweep.expand(s)
            assert len(cells) == ncells, name
            assert all(c.config.clients == clients and c.config.clients_per_round == k for c in cells)
            assert all(c.config.max_length == 128 and c.config.rank == 2 for c in cells)
            assert "smollm2-135m/iid-s0" in names(cells)
            if scheme:
                assert sorted(c.config.alpha for c in cells if c.config.scheme == scheme) == [0.1, 1, 100]
        # the study's models are configured (more local epochs for smaller models)
        per_model = sweep.load_spec(preset=name).per_model
        assert per_model["facebook/opt-125m"]["local_epochs"] >= per_model["facebook/opt-1.3b"]["local_epochs"]
    local = sweep.expand(sweep.load_spec(preset="study-local"))
    assert {(c.config.scheme, c.config.alpha) for c in local if c.config.scheme != "iid"} == \
        {("length", 0.1), ("quantity", 0.1)}


# ---------------------------------------------------------------- running

def tiny_grid(tmp_path, model: str, **run) -> sweep.GridSpec:
    settings = dict(model=model, dataset="sotu", max_train_examples=120, max_test_examples=16,
                    clients=4, clients_per_round=2, rounds=1, batch_size=8, max_length=48, rank=2,
                    lr=5e-3, precision="fp32", device="cpu", seed=3)
    settings.update(run)
    return spec({"scheme": ["length", "iid"], "alpha": [0.1]}, run=settings)


@pytest.fixture
def count_loads(monkeypatch):
    import cllora.model

    calls = []
    real = cllora.model.load_model

    def counting(name, *args, **kwargs):
        calls.append(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(cllora.model, "load_model", counting)
    return calls


def metric_rows(path):
    return [{k: v for k, v in r.items() if k not in records.TIMING_COLUMNS} for r in records.read_csv(path)]


def test_tiny_sweep_loads_model_once_skips_done_and_resumes(tiny_model, tmp_path, count_loads):
    root = tmp_path / "sweep"
    s = tiny_grid(tmp_path, tiny_model)
    cells = sweep.expand(s)
    slug = sweep.model_slug(tiny_model)
    assert names(cells) == [f"{slug}/length-a0.1-s3", f"{slug}/iid-s3"]

    outcome = sweep.run_sweep(s, cells, root, progress=False)
    assert count_loads == [tiny_model]  # one base model for both cells
    assert (outcome.ran, outcome.skipped, outcome.failed, outcome.model_loads) == (2, 0, 0, 1)
    index = json.loads((root / "index.json").read_text())
    assert [c["name"] for c in index["cells"]] == names(cells)
    assert {c["status"] for c in index["cells"]} == {"done"}
    assert index["cells"][1]["alpha"] is None and index["cells"][0]["config"]["alpha"] == 0.1
    with open(root / "index.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["name"] for r in rows] == names(cells) and rows[0]["rounds_completed"] == "1"
    for c in cells:
        assert (root / c.name / "summary.json").is_file()

    # run again: everything finished, nothing is loaded or run
    count_loads.clear()
    again = sweep.run_sweep(s, cells, root, progress=False)
    assert (again.ran, again.skipped, count_loads) == (0, 2, [])

    # more rounds: every cell is resumed from its checkpoint, still one model load
    longer = sweep.expand(tiny_grid(tmp_path, tiny_model, rounds=2))
    assert [sweep.cell_status(root / c.name, c.config)[0] for c in longer] == ["partial"] * 2
    outcome = sweep.run_sweep(s, longer, root, progress=False)
    assert count_loads == [tiny_model] and outcome.ran == 2
    assert [r["round"] for r in records.read_csv(root / longer[0].name / "rounds.csv")] == [0, 1, 2]
    # the second cell, resumed on a base model the first cell had LoRA on, equals a fresh run
    run_experiment(longer[-1].config, tmp_path / "alone", log=lambda m: None)
    assert metric_rows(root / longer[-1].name / "rounds.csv") == metric_rows(tmp_path / "alone" / "rounds.csv")

    # a cell directory holding a run with other settings is refused before anything runs
    other = sweep.expand(tiny_grid(tmp_path, tiny_model, rounds=2, lr=1e-3))
    with pytest.raises(UserError, match="was run with lr=0.005, not 0.001"):
        sweep.run_sweep(s, other, root, progress=False)


def test_failed_cell_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    import cllora.model
    import cllora.engine

    monkeypatch.setattr(cllora.model, "load_tokenizer", lambda name, log=print: object())
    monkeypatch.setattr(cllora.model, "load_model", lambda name, *a, **k: None)
    ran = []

    def fake_run(config, out, **kwargs):
        ran.append(config.scheme)
        if config.scheme == "length" and config.alpha == 0.1:
            raise RunFailed("round 1: every sampled client failed")
        out.mkdir(parents=True, exist_ok=True)
        records.write_json(out / "summary.json", {"rounds_completed": config.rounds, "initial_test_loss": 2.0,
                                                  "final_test_loss": 1.0, "best_test_loss": 1.0, "best_round": 1})
        return {}

    monkeypatch.setattr(cllora.engine, "run_experiment", fake_run)
    s = spec({"scheme": ["length", "iid"], "alpha": [0.1, 100]}, run={"device": "cpu", "precision": "fp32"})
    cells = sweep.expand(s)
    with pytest.raises(RunFailed, match="1 of 3 cells failed .*length-a0.1-s0: round 1"):
        sweep.run_sweep(s, cells, tmp_path, progress=False)
    assert ran == ["length", "length", "iid"]
    status = {c["name"]: (c["status"], c["error"]) for c in json.loads((tmp_path / "index.json").read_text())["cells"]}
    assert status["smollm2-135m/length-a0.1-s0"] == ("failed", "round 1: every sampled client failed")
    assert status["smollm2-135m/iid-s0"] == ("done", None)
