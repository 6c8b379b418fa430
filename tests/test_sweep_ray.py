"""Sweeps on Ray (`cllora sweep --ray`): the same results as the sequential sweep cell for cell, a
failing cell recorded while the others finish, Ctrl-C leaving finished cells whole and the rest
resumable, the flags' checks, the progress view off a terminal, and the --dry-run cost estimate.
One local Ray instance (2 CPUs) serves the whole module and is shut down at its end."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from cllora import records
from cllora.cli import main
from cllora.errors import RunFailed, UserError
from cllora.sweep import estimate as sweep_estimate
from cllora.sweep import grid
from cllora.sweep import run as sweep
from cllora.sweep.on_ray import RayOptions, cell_resources, run_sweep_ray
from cllora.sweep.view import SweepView
from cllora.sweep.worker import CellWorker

pytestmark = pytest.mark.filterwarnings("ignore:Tip. In future versions of Ray:FutureWarning")

GRID = """[run]
model = "{model}"
dataset = "sotu"
max_train_examples = 120
max_test_examples = 16
clients_per_round = 2
rounds = 2
batch_size = 8
max_length = 48
rank = 2
lr = 5e-3
precision = "fp32"
device = "cpu"
seed = 3
[grid]
scheme = ["length", "iid"]
alpha = [0.1]
clients = [4, 200]    # 200 clients for 120 texts: that cell fails
"""


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    temp = tempfile.mkdtemp(prefix="clr", dir="/tmp")  # socket paths < 108 characters
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="error", _temp_dir=temp)
    yield ray
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def grid_file(tiny_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("grid") / "g.toml"
    path.write_text(GRID.format(model=tiny_model))
    return path


def load(grid_file):
    spec = sweep.load_spec(grid_file)
    return spec, grid.expand(spec)


def metric_rows(path):
    return [{k: v for k, v in r.items() if k not in records.TIMING_COLUMNS} for r in records.read_csv(path)]


def assert_same_rows(a, b):
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for k in ra:
            if isinstance(ra[k], float) and isinstance(rb[k], float) and not math.isnan(ra[k]):
                assert ra[k] == pytest.approx(rb[k], rel=1e-6, abs=1e-9), k
            else:
                assert ra[k] == rb[k], k


def all_cpus_free(ray, wait: float = 20.0) -> bool:
    """Every actor gone (ray.kill releases its CPU a moment later)."""
    end = time.monotonic() + wait
    while ray.available_resources().get("CPU") != 2 and time.monotonic() < end:
        time.sleep(0.2)
    return ray.available_resources().get("CPU") == 2


def statuses(root):
    return {c["name"]: (c["status"], c["error"]) for c in json.loads((root / "index.json").read_text())["cells"]}


@pytest.fixture(scope="module")
def sequential(grid_file, tmp_path_factory):
    spec, cells = load(grid_file)
    root = tmp_path_factory.mktemp("seq")
    with pytest.raises(RunFailed):
        sweep.run_sweep(spec, cells, root, progress=False)
    return root


# ---------------------------------------------------------------- running on Ray

def test_ray_sweep_equals_sequential_and_a_failing_cell_leaves_the_others(ray_local, grid_file, sequential,
                                                                         tmp_path, capsys):
    spec, cells = load(grid_file)
    lines = []
    with pytest.raises(RunFailed, match="2 of 4 cells failed .*n200-s3: clients \\(200\\) is more than"):
        run_sweep_ray(spec, cells, tmp_path, log=lines.append)
    assert statuses(tmp_path) == statuses(sequential)  # the same cells done, the same reasons
    done = [c for c in cells if c.config.clients == 4]
    assert [statuses(tmp_path)[c.name][0] for c in done] == ["done", "done"]
    for cell in done:  # the same numbers, round for round, and the same files
        assert_same_rows(metric_rows(tmp_path / cell.name / "rounds.csv"),
                         metric_rows(sequential / cell.name / "rounds.csv"))
        assert sorted(p.name for p in (tmp_path / cell.name).iterdir()) == \
            sorted(p.name for p in (sequential / cell.name).iterdir())
    # every event line carries the counts; a failure says why
    assert any("failed, " in l and "n200-s3 failed" in l and "clients (200)" in l for l in lines)
    assert lines[-1].startswith("[2/4 done, 0 running, 2 failed, 0 pending]")
    # the actors are gone: both CPUs free again
    assert all_cpus_free(ray_local)

    # a rerun skips the finished cells and retries only the failed ones
    again = []
    with pytest.raises(RunFailed):
        run_sweep_ray(spec, cells, tmp_path, log=again.append)
    assert "4 cells (2 done, 0 to resume, 2 to run)" in again[0]

    # --dry-run: each finished cell's measured seconds; the estimate calibrated on them
    assert main(["sweep", "--config", str(grid_file), "--dry-run", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("done in") == 2 and "measured on 2 finished cell(s) of this sweep" in out


def test_a_request_no_node_meets_is_refused_before_anything_is_written(ray_local, grid_file, tmp_path):
    spec, cells = load(grid_file)
    with pytest.raises(UserError, match="no Ray node has 4 CPU\\(s\\) and 0 GPU\\(s\\)"):
        run_sweep_ray(spec, cells, tmp_path / "s", RayOptions(cell_cpus=4))
    assert not (tmp_path / "s").exists()


def test_ctrl_c_leaves_finished_cells_whole_and_a_rerun_resumes(ray_local, grid_file, sequential, tmp_path,
                                                                monkeypatch):
    spec, cells = load(grid_file)
    cells = [c for c in cells if c.config.clients == 4]
    real_done = SweepView.done

    def interrupted(self, *args, **kwargs):  # Ctrl-C right after the first cell finishes
        real_done(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(SweepView, "done", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_sweep_ray(spec, cells, tmp_path)
    after = [s for s, _ in statuses(tmp_path).values()]
    # the finished cell is recorded done; the other as far as it got (done too if it won the race)
    assert "done" in after and set(after) <= {"done", "partial", "pending"}
    assert all_cpus_free(ray_local)  # the running cell's actor was stopped

    monkeypatch.setattr(SweepView, "done", real_done)
    outcome = run_sweep_ray(spec, cells, tmp_path)
    assert (outcome.ran, outcome.skipped, outcome.failed) == (2 - after.count("done"), after.count("done"), 0)
    for cell in cells:
        assert_same_rows(metric_rows(tmp_path / cell.name / "rounds.csv"),
                         metric_rows(sequential / cell.name / "rounds.csv"))


class DyingWorker(CellWorker):
    """A worker whose process dies (as when the kernel kills it for memory) on IID cells."""

    def run(self, cell, root, resume):
        if cell.config.scheme == "iid":
            os._exit(1)
        return super().run(cell, root, resume)


def test_a_worker_that_dies_fails_its_cell_and_the_sweep_goes_on(ray_local, grid_file, tmp_path, monkeypatch):
    import ray.cloudpickle

    import cllora.sweep.on_ray

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import tests/
    monkeypatch.setattr(cllora.sweep.on_ray, "CellWorker", DyingWorker)
    spec, cells = load(grid_file)
    cells = [c for c in cells if c.config.clients == 4]
    with pytest.raises(RunFailed, match="1 of 2 cells failed .*iid-n4-s3: Ray worker lost"):
        run_sweep_ray(spec, cells, tmp_path)
    assert [s for s, _ in statuses(tmp_path).values()] == ["done", "failed"]
    assert all_cpus_free(ray_local)


# ---------------------------------------------------------------- flags, resources, view, estimate

@pytest.mark.parametrize("flags, message", [
    (["--ray", "--cell-cpus", "0"], "--cell-cpus must be > 0, got 0"),
    (["--ray", "--cell-cpus", "1.5"], "--cell-cpus above 1 must be a whole number, got 1.5"),
    (["--ray", "--cell-gpus", "-0.5"], "--cell-gpus must be >= 0, got -0.5"),
    (["--ray", "--cell-gpus", "inf"], "--cell-gpus must be a finite number, got inf"),
    (["--cell-gpus", "1"], "--cell-gpus applies to Ray sweeps only: add --ray"),
    (["--ray", "myhost"], "--ray ADDRESS must be host:port"),
    (["--ray", "myhost:port"], "--ray ADDRESS must be host:port"),
    (["--ray", "--cell-cpus", "two"], "invalid float value: 'two'"),
])
def test_bad_ray_flags_exit_2(flags, message, capsys):
    try:
        code = main(["sweep", "--preset", "study-length", "--quick", "--dry-run", *flags])
    except SystemExit as exc:  # argparse's own checks
        code = exc.code
    assert code == 2 and message in capsys.readouterr().err


def test_flower_sim_cells_are_refused_before_ray_starts(tmp_path):
    spec = grid.parse_spec({"run": {"engine": "flower-sim", "scheme": "iid"}, "grid": {"seed": [0]}}, "t", "t")
    pytest.importorskip("flwr")
    with pytest.raises(UserError, match="flower-sim runs on Flower's own Ray simulation"):
        run_sweep_ray(spec, grid.expand(spec), tmp_path)


def test_cell_resources_defaults_fit_and_refusals():
    spec = grid.parse_spec({"run": {"device": "auto"}, "grid": {"seed": [0, 1]}}, "t", "t")
    cells = grid.expand(spec)
    two_cpus, gpu_node = [{"CPU": 2.0}], [{"CPU": 8.0, "GPU": 1.0}, {"CPU": 2.0}]
    assert cell_resources(cells, RayOptions(), two_cpus) == (1.0, 0.0, 2)
    assert cell_resources(cells, RayOptions(), gpu_node) == (1.0, 1.0, 1)  # device auto: a GPU each
    assert cell_resources(cells, RayOptions(cell_gpus=0.25), gpu_node) == (1.0, 0.25, 4)
    assert cell_resources(cells, RayOptions(cell_gpus=0), gpu_node) == (1.0, 0.0, 10)
    with pytest.raises(UserError, match="no Ray node has 4 CPU\\(s\\) and 0 GPU\\(s\\).*largest has 2 CPUs"):
        cell_resources(cells, RayOptions(cell_cpus=4), two_cpus)
    cuda = grid.expand(grid.parse_spec({"run": {"device": "cuda"}, "grid": {"seed": [0]}}, "t", "t"))
    with pytest.raises(UserError, match="asks for device cuda, but each cell gets no GPU \\(the Ray cluster"):
        cell_resources(cuda, RayOptions(), two_cpus)


def test_progress_view_off_a_terminal_is_plain_lines(tmp_path):
    costs = [sweep_estimate.CellCost(n, 1.0, None, 0.0) for n in ("a", "b", "c")]
    lines = []
    view = SweepView(tmp_path, costs, {"a": 2, "b": 2, "c": 2}, ["a", "b", "c"], 2, 10.0,
                     say=lines.append, heartbeat=0)
    view.start("a")
    view.start("b")
    view.tick()  # heartbeat: the running cells with their round
    view.done("a", 20.0, ": ok")
    view.failed("b", 1.0, "boom")
    assert lines[0] == "[0/3 done, 1 running, 0 failed, 2 pending, ETA ~15s] a started"
    assert lines[2].startswith("[0/3 done, 2 running") and "running: a (round 0/2" in lines[2]
    # a finished cell recalibrates: 20 s per TFLOP, c (1 TFLOP) left on one of 2 slots
    assert lines[3] == "[1/3 done, 1 running, 0 failed, 1 pending, ETA ~20s] a done in 20s: ok"
    assert lines[4].startswith("[1/3 done, 0 running, 1 failed, 1 pending, ETA ~20s] b failed after 1s: boom")
    view.close()


def test_cost_estimate_counts_the_work_and_calibrates_on_finished_cells(tmp_path):
    spec = grid.parse_spec({"run": {"model": "smollm2-135m", "max_train_examples": 100, "max_test_examples": 10,
                                    "clients": 5, "clients_per_round": 2, "rounds": 3, "local_epochs": 1,
                                    "max_length": 100, "local_test_fraction": 0.1, "fairness_every": 0},
                            "grid": {"seed": [0, 1]}}, "t", "t")
    cells = grid.expand(spec)
    n = sweep_estimate.KNOWN_PARAMS["smollm2-135m"]
    train = 3 * 2 * 1 * (90 / 5) * 100  # rounds x clients x epochs x texts each x tokens
    scored = 4 * 10 * 100  # rounds 0..3 evaluated, 10 test texts of 100 tokens
    assert sweep_estimate.cell_tflop(cells[0]) == pytest.approx((4 * n * train + 2 * n * scored) / 1e12)
    costs, rate, basis = sweep_estimate.estimate(cells, tmp_path)
    assert rate == sweep_estimate.DEFAULT_SECONDS_PER_TFLOP and "default rate" in basis
    done = sweep_estimate.CellCost("x", 2.0, 30.0, 1.0)
    assert sweep_estimate.calibrate([done, costs[0]]) == (15.0, "measured on 1 finished cell(s) of this sweep")
    assert "with 2 cells at once" in sweep_estimate.summary_line(costs, basis, 2)


def test_import_cllora_and_the_sequential_sweep_never_import_ray():
    code = ("import sys, cllora, cllora.sweep.run, cllora.sweep.on_ray, cllora.commands.sweep, cllora.cli; "
            "cllora.cli.build_parser(); assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
