"""Rules of a run found in review: every round recorded, config checked before anything is written,
resume computes as the run did, named random streams, adapters stay fp32, only user errors are one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_engine import tiny_config

from cllora import records
from cllora.cli import main
from cllora.engine import client as client_mod
from cllora.engine import evaluation as evaluation_mod
from cllora.engine import experiment as exp_mod
from cllora.engine.loop import run_experiment
from cllora.errors import UserError
from cllora.seeds import PURPOSES, stream


def test_eval_every_still_records_every_round(tiny_model, tmp_path, monkeypatch):
    """Unevaluated rounds keep who was sampled, who failed and why, training loss and bytes."""
    real = client_mod.client_update

    def poisoned(exp, state, cid, rnd, on_step=None, evaluate_own_split=False, **kw):
        update = real(exp, state, cid, rnd, on_step, evaluate_own_split, **kw)
        if rnd == 2 and cid == exp_mod.sample_clients(exp.config, rnd)[0]:  # an unevaluated round
            update.state = {k: v * float("nan") for k, v in update.state.items()}
        return update

    monkeypatch.setattr("cllora.engine.loop.client_update", poisoned)
    out = tmp_path / "sparse"
    summary = run_experiment(tiny_config(tiny_model, rounds=4, eval_every=3), out)
    rounds = records.read_csv(out / "rounds.csv")
    assert [r["round"] for r in rounds] == [0, 1, 2, 3, 4]
    assert [r["global_test_loss"] is not None for r in rounds] == [True, False, False, True, True]
    assert [r["num_failed"] for r in rounds] == [0, 0, 1, 0, 0]
    assert all(r["num_participants"] == 2 and r["bytes_down"] > 0 for r in rounds[1:])
    assert rounds[2]["train_loss_mean"] is not None
    assert summary["failed_client_updates"] == 1
    clients = records.read_csv(out / "clients.csv")
    assert len(clients) == 5 * 6
    failed = [c for c in clients if c["failed"]]
    assert [c["round"] for c in failed] == [2] and "NaN or Inf" in failed[0]["error"]
    r1 = [c for c in clients if c["round"] == 1]
    assert sum(c["participated"] for c in r1) == 2
    assert all(c["global_model_local_test_loss"] is None for c in r1)  # not evaluated
    assert all(c["train_loss"] is not None for c in r1 if c["participated"])


def test_unknown_strategy_in_a_config_file_writes_nothing(tiny_model, tmp_path, capsys):
    config = tmp_path / "exp.toml"
    config.write_text(f'[run]\nmodel = "{tiny_model}"\nstrategy = "fedmagic"\n')
    out = tmp_path / "run"
    assert main(["run", "--config", str(config), "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "strategy (in " in err and "must be one of" in err and "'fedmagic'" in err and "Traceback" not in err
    assert not out.exists()


def _fake_resolution(monkeypatch, precision: str) -> None:
    import cllora.device

    monkeypatch.setattr(cllora.device, "cpu_has_fast_bf16", lambda: precision == "bf16")


def test_resume_refuses_another_auto_precision_unless_explicit(tiny_model, tmp_path, monkeypatch):
    out = tmp_path / "run"
    _fake_resolution(monkeypatch, "fp32")  # the machine that started the run: no fast bf16
    run_experiment(tiny_config(tiny_model, rounds=1, precision="auto"), out)
    _fake_resolution(monkeypatch, "bf16")  # resumed on a machine where auto means bf16
    with pytest.raises(UserError, match="computed in precision fp32, but precision=auto resolves to bf16"):
        run_experiment(tiny_config(tiny_model, rounds=2, precision="auto"), out, resume=True)
    assert records.load_checkpoint(out)[0] == 1  # nothing was trained or written
    run_experiment(tiny_config(tiny_model, rounds=2, precision="fp32"), out, resume=True)  # explicit
    saved = json.loads((out / "config.json").read_text())
    assert saved["precision"] == "fp32" and saved["config"]["precision"] == "auto"
    assert saved["config"]["rounds"] == 2
    (session,) = saved["resumes"]  # what the resumed session computed on, beside the start's record
    assert {k: session[k] for k in ("precision", "device", "from_round", "device_fallback")} == \
        {"precision": "fp32", "device": "cpu", "from_round": 1, "device_fallback": None}
    assert session["torch_version"] == saved["torch_version"]


def test_config_json_records_parameter_counts(tiny_model, tmp_path):
    out = tmp_path / "run"
    run_experiment(tiny_config(tiny_model, rounds=1), out)
    saved = json.loads((out / "config.json").read_text())
    # tiny OPT: 2 layers x (q, v) x rank 4 x (64 in + 64 out)
    assert saved["trainable_params"] == 2 * 2 * 4 * (64 + 64)
    from transformers import AutoModelForCausalLM

    base = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(tiny_model).parameters())
    assert saved["total_params"] == base + saved["trainable_params"]


def test_live_lora_parameters_stay_fp32_on_a_bf16_base(tiny_model):
    from cllora.model import load_model, load_tokenizer

    cfg = tiny_config(tiny_model, precision="bf16")
    tokenizer = load_tokenizer(tiny_model)
    base = load_model(tiny_model, "cpu", "bf16")
    exp = exp_mod.prepare_experiment(cfg, base, tokenizer, torch.device("cpu"), "bf16", log=lambda m: None)
    try:
        frozen = {p.dtype for n, p in exp.model.named_parameters() if "lora_" not in n}
        assert frozen == {torch.bfloat16}
        client_mod.client_update(exp, exp.initial_state, 0, 1)
        assert exp.params and {p.dtype for p in exp.params} == {torch.float32}
    finally:
        exp_mod.release(exp)


def test_eval_fp32_weights_are_kept_on_the_device(tiny_model):
    from cllora.model import load_model, load_tokenizer

    cfg = tiny_config(tiny_model, precision="bf16", eval_fp32=True)
    exp = exp_mod.prepare_experiment(cfg, load_model(tiny_model, "cpu", "bf16"), load_tokenizer(tiny_model),
                                     torch.device("cpu"), "bf16", log=lambda m: None)
    try:
        assert all(w.device == exp.device and w.dtype == torch.float32 for w in exp.fp32_base.values())
        name = next(iter(exp.fp32_base))
        params = dict(exp.model.named_parameters())
        with evaluation_mod.eval_precision(exp):
            assert params[name].data_ptr() == exp.fp32_base[name].data_ptr()  # swapped in, not copied
        assert params[name].dtype == torch.bfloat16
    finally:
        exp_mod.release(exp)


def test_random_streams_are_named_and_independent(tiny_model):
    """Corpus split and partition once drew from the same default_rng(seed) stream."""
    firsts = {p: tuple(stream(7, p).integers(0, 2**31, 4)) for p in PURPOSES}
    assert len(set(firsts.values())) == len(PURPOSES)
    assert tuple(np.random.default_rng(7).integers(0, 2**31, 4)) not in set(firsts.values())
    with pytest.raises(ValueError, match="unknown random-stream purpose 'nope'"):
        stream(7, "nope")
    from cllora import partition as part
    from cllora.model import load_tokenizer

    cfg = tiny_config(tiny_model)
    data = exp_mod.prepare_data(cfg, load_tokenizer(tiny_model), log=lambda m: None)
    again = part.make_partition(cfg.scheme, data.labels, cfg.clients, stream(cfg.seed, "partition"),
                                alpha=cfg.alpha, num_classes=cfg.num_classes)
    assert [list(c) for c in again.clients] == [list(c) for c in data.partition.clients]


def test_a_bug_shows_its_traceback(monkeypatch):
    """Only UserError is a one-line user error; any other ValueError is a bug and propagates."""
    import cllora.commands.info as info

    def broken(args):
        raise ValueError("internal invariant broken")

    monkeypatch.setattr(info, "run", broken)
    with pytest.raises(ValueError, match="internal invariant broken"):
        main(["info"])


def test_a_missing_command_module_is_an_error(monkeypatch):
    import cllora.cli

    monkeypatch.setattr(cllora.cli, "COMMAND_MODULES", ("info", "no_such_command"))
    with pytest.raises(ModuleNotFoundError, match="no_such_command"):
        cllora.cli.build_parser()


def test_a_reused_base_model_must_match_the_config(tiny_model, tmp_path):
    from cllora.model import attach_lora, load_model

    with pytest.raises(ValueError, match="base model passed in is torch.bfloat16, but the config resolves to fp32"):
        run_experiment(tiny_config(tiny_model), tmp_path / "a", base_model=load_model(tiny_model, "cpu", "bf16"))
    with pytest.raises(ValueError, match="still carries LoRA layers"):
        run_experiment(tiny_config(tiny_model), tmp_path / "b",
                       base_model=attach_lora(load_model(tiny_model, "cpu", "fp32"), rank=2))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
