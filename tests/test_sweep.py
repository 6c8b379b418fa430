"""Sweeps on disk: presets, the command, the one "run complete" rule, and a real tiny sweep (one
model load per sweep, index, skip finished cells, resume unfinished ones); cells run on their engine.
Grid parsing and expansion without disk: test_grid.py."""

from __future__ import annotations

import csv
import json
import sys

import pytest
import torch

from cllora import records
from cllora.cli import main
from cllora.engine.loop import run_experiment
from cllora.errors import RunFailed, UserError
from cllora.sweep import grid
from cllora.sweep import index as sweep_index
from cllora.sweep import run as sweep


def spec(axes: dict, run: dict | None = None, **tables) -> grid.GridSpec:
    return grid.parse_spec({"run": run or {}, "grid": axes, **tables}, "test grid", "t")


def names(cells):
    return [c.name for c in cells]


# ---------------------------------------------------------------- grid files, presets, the command

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
            cells = grid.expand(s)
            assert len(cells) == ncells, name
            assert all(c.config.clients == clients and c.config.clients_per_round == k for c in cells)
            assert all(c.config.max_length == 128 and c.config.rank == 2 for c in cells)
            assert "smollm2-135m/iid-s0" in names(cells)
            if scheme:
                assert sorted(c.config.alpha for c in cells if c.config.scheme == scheme) == [0.1, 1, 100]
        # the study's models are configured (more local epochs for smaller models)
        per_model = sweep.load_spec(preset=name).per_model
        assert per_model["facebook/opt-125m"]["local_epochs"] >= per_model["facebook/opt-1.3b"]["local_epochs"]
    local = grid.expand(sweep.load_spec(preset="study-local"))
    assert {(c.config.scheme, c.config.alpha) for c in local if c.config.scheme != "iid"} == \
        {("length", 0.1), ("quantity", 0.1)}


# ---------------------------------------------------------------- running

def tiny_grid(tmp_path, model: str, **run) -> grid.GridSpec:
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
    cells = grid.expand(s)
    slug = grid.model_slug(tiny_model)
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

    # the same sweep with another seed into the same root: the first grid's cells stay in the index
    grid_spec = grid.GridSpec(name=s.name, description="", run={}, grid={}, per_model={}, source="")
    sweep_index.write_index(root, grid_spec, [dict(index["cells"][0], name="other/iid-s9", status="pending")])
    merged = json.loads((root / "index.json").read_text())
    assert [c["name"] for c in merged["cells"]] == names(cells) + ["other/iid-s9"]
    assert [c["status"] for c in merged["cells"]] == ["done", "done", "pending"]
    assert merged["counts"]["done"] == 2 and merged["counts"]["pending"] == 1
    sweep_index.write_index(root, grid_spec, [])  # a cell of an earlier grid that never ran is dropped
    assert [c["name"] for c in json.loads((root / "index.json").read_text())["cells"]] == names(cells)
    sweep_index.write_index(root, grid_spec, [index["cells"][0], index["cells"][1]])  # as before

    # run again: everything finished, nothing is loaded or run
    count_loads.clear()
    again = sweep.run_sweep(s, cells, root, progress=False)
    assert (again.ran, again.skipped, count_loads) == (0, 2, [])

    # more rounds: every cell is resumed from its checkpoint, still one model load
    longer = grid.expand(tiny_grid(tmp_path, tiny_model, rounds=2))
    assert [sweep_index.cell_status(root, c)[0] for c in longer] == ["partial"] * 2
    outcome = sweep.run_sweep(s, longer, root, progress=False)
    assert count_loads == [tiny_model] and outcome.ran == 2
    assert [r["round"] for r in records.read_csv(root / longer[0].name / "rounds.csv")] == [0, 1, 2]
    # the second cell, resumed on a base model the first cell had LoRA on, equals a fresh run
    run_experiment(longer[-1].config, tmp_path / "alone", log=lambda m: None)
    assert metric_rows(root / longer[-1].name / "rounds.csv") == metric_rows(tmp_path / "alone" / "rounds.csv")

    # a cell directory holding a run with other settings is refused before anything runs
    other = grid.expand(tiny_grid(tmp_path, tiny_model, rounds=2, lr=1e-3))
    with pytest.raises(UserError, match="was run with lr=0.005, not 0.001"):
        sweep.run_sweep(s, other, root, progress=False)


def finished_run(config, out, rounds: int | None = None) -> dict:
    """What a finished run leaves that the sweep reads: config.json and summary.json."""
    out.mkdir(parents=True, exist_ok=True)
    records.write_config(out, config, {})
    records.write_json(out / "summary.json", {"rounds_completed": rounds or config.rounds,
                                              "initial_test_loss": 2.0, "final_test_loss": 1.0,
                                              "best_test_loss": 1.0, "best_round": 1})
    return {}


def test_failed_cell_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    import cllora.runner
    import cllora.model

    monkeypatch.setattr(cllora.model, "load_tokenizer", lambda name, log=print: object())
    monkeypatch.setattr(cllora.model, "load_model", lambda name, *a, **k: None)
    ran = []

    def fake_run(config, out, **kwargs):
        ran.append(config.scheme)
        if config.scheme == "length" and config.alpha == 0.1:
            raise RunFailed("round 1: every sampled client failed")
        return finished_run(config, out)

    monkeypatch.setattr(cllora.runner, "run_experiment", fake_run)
    s = spec({"scheme": ["length", "iid"], "alpha": [0.1, 100]}, run={"device": "cpu", "precision": "fp32"})
    cells = grid.expand(s)
    with pytest.raises(RunFailed, match="1 of 3 cells failed .*length-a0.1-s0: round 1"):
        sweep.run_sweep(s, cells, tmp_path, progress=False)
    assert ran == ["length", "length", "iid"]
    status = {c["name"]: (c["status"], c["error"]) for c in json.loads((tmp_path / "index.json").read_text())["cells"]}
    assert status["smollm2-135m/length-a0.1-s0"] == ("failed", "round 1: every sampled client failed")
    assert status["smollm2-135m/iid-s0"] == ("done", None)


def test_a_model_that_cannot_be_loaded_fails_its_cells_only(tmp_path, monkeypatch):
    import cllora.runner
    import cllora.model

    def load_model(name, *a, **k):
        if name == "broken":
            raise OSError("no weights for broken")

    monkeypatch.setattr(cllora.model, "load_tokenizer", lambda name, log=print: object())
    monkeypatch.setattr(cllora.model, "load_model", load_model)
    monkeypatch.setattr(cllora.runner, "run_experiment", lambda config, out, **k: finished_run(config, out))
    s = spec({"model": ["broken", "fine"], "seed": [0, 1]}, run={"scheme": "iid", "device": "cpu",
                                                                 "precision": "fp32"})
    with pytest.raises(RunFailed, match="2 of 4 cells failed .*broken/iid-s0: no weights for broken"):
        sweep.run_sweep(s, grid.expand(s), tmp_path, progress=False)
    index = json.loads((tmp_path / "index.json").read_text())
    assert [(c["name"], c["status"]) for c in index["cells"]] == [
        ("broken/iid-s0", "failed"), ("broken/iid-s1", "failed"), ("fine/iid-s0", "done"), ("fine/iid-s1", "done")]
    assert index["counts"] == {"done": 2, "partial": 0, "pending": 0, "running": 0, "failed": 2}


# ---------------------------------------------------------------- engines

def test_flower_sim_cells_run_through_flower_and_in_process_cells_do_not(tmp_path, monkeypatch):
    """Bug: sweeps ran every cell in-process, whatever its engine."""
    import cllora.runner
    import cllora.flower.server
    import cllora.model

    calls, loads = [], []

    def recorder(engine):
        def run(config, out, **kwargs):
            calls.append((engine, config.engine, out.relative_to(tmp_path).as_posix(), kwargs["resume"],
                          "base_model" in kwargs))
            return finished_run(config, out)
        return run

    monkeypatch.setattr(cllora.flower.server, "run_flower_simulation", recorder("flower"))
    monkeypatch.setattr(cllora.runner, "run_experiment", recorder("inprocess"))
    monkeypatch.setattr(cllora.model, "load_tokenizer", lambda name, log=print: object())
    monkeypatch.setattr(cllora.model, "load_model", lambda name, *a, **k: loads.append(name))
    s = spec({"engine": ["flower-sim", "inprocess"]}, run={"scheme": "iid", "device": "cpu", "precision": "fp32"})
    outcome = sweep.run_sweep(s, grid.expand(s), tmp_path, progress=False)
    assert calls == [("flower", "flower-sim", "smollm2-135m/iid-engineflower-sim-s0", False, False),
                     ("inprocess", "inprocess", "smollm2-135m/iid-engineinprocess-s0", False, True)]
    assert loads == ["smollm2-135m"] and (outcome.ran, outcome.model_loads) == (2, 1)


def test_flower_sim_without_flower_installed_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "cllora.flower.server", None)  # `import cllora.flower.server` raises ImportError
    s = spec({"seed": [0, 1]}, run={"engine": "flower-sim", "scheme": "iid"})
    with pytest.raises(UserError, match="cell smollm2-135m/iid-s0: engine flower-sim needs "
                                        "Flower: pip install 'cllora\\[flower\\]'"):
        sweep.run_sweep(s, grid.expand(s), tmp_path / "sweep", progress=False)
    assert not (tmp_path / "sweep").exists()


@pytest.mark.flower
def test_a_real_flower_sim_cell_on_the_tiny_model(tiny_model, tmp_path):
    s = tiny_grid(tmp_path, tiny_model, engine="flower-sim")
    cells = [c for c in grid.expand(s) if c.config.scheme == "iid"]
    outcome = sweep.run_sweep(s, cells, tmp_path / "sweep", progress=False)
    assert (outcome.ran, outcome.model_loads) == (1, 0)
    out = tmp_path / "sweep" / cells[0].name
    assert records.saved_config(out).engine == "flower-sim"
    assert [r["round"] for r in records.read_csv(out / "rounds.csv")] == [0, 1]
    assert records.run_status(out) == ("done", 1)


# ---------------------------------------------------------------- the one "run complete" rule

def test_run_status_done_partial_pending(tmp_path):
    from cllora.config.settings import RunConfig

    config = RunConfig(rounds=3)
    assert records.run_status(tmp_path / "nothing") == ("pending", -1)
    records.write_config(tmp_path, config, {})
    assert records.run_status(tmp_path) == ("partial", -1)  # started, no round completed
    records.save_checkpoint(tmp_path, 2, {"w": torch.zeros(1)}, {})
    assert records.run_status(tmp_path) == ("partial", 2)
    finished_run(config, tmp_path, rounds=3)
    assert records.run_status(tmp_path) == ("done", 3)
    assert records.run_status(tmp_path, rounds=5) == ("partial", 2)  # asked to go further
    (tmp_path / "checkpoint.safetensors").write_bytes(b"damaged")
    assert records.run_status(tmp_path, rounds=5) == ("partial", -1)
