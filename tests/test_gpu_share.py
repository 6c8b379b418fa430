"""Sharing a GPU without one at hand (memory and CUDA mocked): the share a cell or a Flower client
declares for a given GPU memory, the Ray worker that was given a GPU it cannot use, and the
--client-gpus setting's bad input through the CLI."""

from __future__ import annotations

import pytest
import torch

import cllora.device as dev
import cllora.engine.runtime as runtime
from cllora.cli import main
from cllora.config.settings import RunConfig
from cllora.sweep import grid
from cllora.sweep.on_ray import RayOptions, cell_resources
from cllora.sweep.worker import CellWorker

GIB = 2**30


@pytest.mark.parametrize("need_gib, gpu_gib, share", [
    (3, 80, 0.125),  # 26 would fit; at most 8 share a GPU
    (20, 80, 0.25), (30, 80, 0.5), (26, 80, 0.3333), (50, 80, 1.0), (90, 80, 1.0), (3, 16, 0.2),
])
def test_the_share_of_a_gpu_follows_its_memory(need_gib, gpu_gib, share):
    assert dev.gpu_fraction(need_gib * GIB, gpu_gib * GIB) == share


def test_the_memory_estimate_of_a_study_cell_is_a_few_gib():
    # SmolLM2-135M's architecture, batch 8 x 128 tokens, bf16 base weights
    need = dev.cell_memory_bytes(134_515_008, "bf16", batch=8, length=128, vocab=49152, layers=30, hidden=576)
    assert 1.5 * GIB < need < 4 * GIB
    assert dev.cell_memory_bytes(134_515_008, "fp32", batch=8, length=128, vocab=49152, layers=30,
                                 hidden=576) > need
    with pytest.raises(ValueError, match="precision must be fp32 or bf16 to estimate memory, got 'auto'"):
        dev.cell_memory_bytes(1, "auto", batch=1, length=1, vocab=1, layers=1, hidden=1)


def test_a_ray_sweep_on_an_80_gib_gpu_packs_cells_by_default(monkeypatch, tiny_model):
    monkeypatch.setattr(runtime, "local_gpu_bytes", lambda: 80 * GIB)
    cells = grid.expand(grid.parse_spec({"run": {"model": tiny_model, "device": "auto"},
                                         "grid": {"seed": [0, 1, 2]}}, "t", "t"))
    share, why = runtime.default_gpu_share([c.config for c in cells])
    assert share == 0.125 and "8 a GPU" in why
    node = [{"CPU": 16.0, "GPU": 1.0}]
    assert cell_resources(cells, RayOptions(), node, share) == (1.0, 0.125, 8)
    assert cell_resources(cells, RayOptions(cell_gpus=0.5), node, share) == (1.0, 0.5, 2)  # the flag wins
    monkeypatch.setattr(runtime, "local_gpu_bytes", lambda: None)  # a driver without a GPU: one each
    assert runtime.default_gpu_share([c.config for c in cells])[0] == 1.0


def test_a_ray_worker_given_a_gpu_it_cannot_use_refuses_the_cell(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(dev, "gpu_seen_by_driver", lambda: True)
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    (cell,) = grid.expand(grid.parse_spec({"run": {"device": "auto"}, "grid": {"seed": [0]}}, "t", "t"))
    result = CellWorker(threads=1, gpus=0.25).run(cell, str(tmp_path), resume=False)
    assert result["status"] == "failed" and not result["loaded"]
    assert "given 0.25 GPU but CUDA is not usable" in result["error"]
    assert "refusing to run the cell on one CPU thread" in result["error"]
    assert "failed: this Ray worker" in (tmp_path / cell.name / "run.log").read_text()
    # a CPU cell, or a worker given no GPU, is not refused
    assert CellWorker(threads=1, gpus=0.0).missing_gpu(cell) is None
    cpu_cell = grid.expand(grid.parse_spec({"run": {"device": "cpu"}, "grid": {"seed": [0]}}, "t", "t"))[0]
    assert CellWorker(threads=1, gpus=1.0).missing_gpu(cpu_cell) is None


def test_flower_sim_client_gpus_is_a_setting(monkeypatch):
    pytest.importorskip("flwr")
    from cllora.flower import server

    assert server.client_gpus(RunConfig(engine="flower-sim", client_gpus=0.2)) == 0.2
    monkeypatch.setattr(server, "_cuda_available", lambda: False)
    assert server.client_gpus(RunConfig(engine="flower-sim")) == 0.0
    monkeypatch.setattr(server, "_cuda_available", lambda: True)
    monkeypatch.setattr(server, "default_gpu_share", lambda configs: (0.125, "8 a GPU"))
    said = []
    assert server.client_gpus(RunConfig(engine="flower-sim"), said.append) == 0.125
    assert "each client declares 0.125 GPU" in said[0]


def _refused(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err


@pytest.mark.parametrize("value, message", [
    ("-0.5", "--client-gpus must be >= 0 (a share of a GPU), got -0.5"),
    ("1.5", "--client-gpus above 1 must be a whole number, got 1.5"),
])
def test_client_gpus_bad_values_exit_2(tmp_path, capsys, value, message):
    _refused(capsys, ["run", "--engine", "flower-sim", "--client-gpus", value, "--out", str(tmp_path / "r")],
             message)
    assert not (tmp_path / "r").exists()


def test_client_gpus_that_is_no_number_is_an_argparse_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--engine", "flower-sim", "--client-gpus", "half", "--out", str(tmp_path / "r")])
    assert exc.value.code == 2 and "--client-gpus: invalid float value: 'half'" in capsys.readouterr().err


def test_client_gpus_wrong_toml_type_and_wrong_engine_exit_2(tmp_path, capsys):
    (tmp_path / "a.toml").write_text('[run]\nengine = "flower-sim"\nclient_gpus = "half"\n')
    _refused(capsys, ["run", "--config", str(tmp_path / "a.toml"), "--out", str(tmp_path / "r")],
             "a.toml) must be a number or left out, got 'half'")
    _refused(capsys, ["run", "--client-gpus", "0.25", "--out", str(tmp_path / "r")],
             "--client-gpus (0.25) is only used with engine flower-sim, not with engine 'inprocess'")
    assert not (tmp_path / "r").exists()
