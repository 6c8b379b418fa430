"""The in-process federated engine end to end on a tiny random OPT: outputs, resume, determinism, faults."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from cllora import records, runner
from cllora.cli import main
from cllora.config.settings import RunConfig
from cllora.engine import client as client_mod
from cllora.engine import experiment as exp_mod
from cllora.engine.loop import run_experiment
from cllora.errors import RunFailed, UserError
from cllora.seeds import stream, torch_seed


def tiny_config(model: str, **changes) -> RunConfig:
    base = dict(model=model, dataset="sotu", max_train_examples=240, max_test_examples=24,
                clients=6, clients_per_round=2, rounds=3, batch_size=8, max_length=64, rank=4,
                lr=5e-3, precision="fp32", device="cpu", scheme="length", alpha=0.5, seed=3)
    return RunConfig().replace(**{**base, **changes})


def metric_columns(path):
    """rounds.csv without the wall-clock columns (the only ones allowed to differ between runs)."""
    rows = records.read_csv(path)
    return [{k: v for k, v in r.items() if k not in records.TIMING_COLUMNS} for r in rows]


def test_end_to_end_writes_every_output(tiny_model, tmp_path):
    out = tmp_path / "run"
    summary = runner.run(tiny_config(tiny_model), out)  # the engine's loop, with the run's figures
    for name in ("config.json", "partition.json", "rounds.csv", "clients.csv", "summary.json",
                 "checkpoint.safetensors", "global_loss.png", "client_loss.png", "fairness.png",
                 "adapter/adapter_model.safetensors", "adapter/adapter_config.json"):
        assert (out / name).is_file(), name
    rounds = records.read_csv(out / "rounds.csv")
    assert [r["round"] for r in rounds] == [0, 1, 2, 3]
    assert set(records.ROUND_COLUMNS) <= set(rounds[0])
    assert rounds[-1]["global_test_loss"] < rounds[0]["global_test_loss"]  # it learns
    assert rounds[1]["bytes_down"] == rounds[1]["bytes_up"] == 2 * summary["adapter_bytes"]
    assert rounds[-1]["bytes_cumulative"] == 3 * 4 * summary["adapter_bytes"]
    clients = records.read_csv(out / "clients.csv")
    assert len(clients) == 4 * 6
    r1 = [c for c in clients if c["round"] == 1]
    assert sum(c["participated"] for c in r1) == 2
    for c in r1:
        assert (c["local_model_test_loss"] is not None) == bool(c["participated"])
        assert math.isfinite(c["global_model_local_test_loss"])
    # fairness = population variance of the global model's loss on each client's local test split
    losses = [c["global_model_local_test_loss"] for c in r1]
    assert rounds[1]["fairness_var"] == pytest.approx(np.var(losses))
    part = json.loads((out / "partition.json").read_text())
    assert part["scheme"] == "length" and len(part["clients"]) == 6
    assert (out / "partition.png").is_file()
    assert summary["final_test_loss"] == rounds[-1]["global_test_loss"]
    # split_losses.npz: per round, the per-text losses behind each client's global-model loss
    split = records.read_npz(out / records.SPLIT_LOSSES)
    assert sorted(k for k in split if k.startswith("loss_r")) == [f"loss_r{r}" for r in range(4)]
    for r in (0, 3):
        owner, tokens, loss = split[f"owner_r{r}"], split[f"tokens_r{r}"], split[f"loss_r{r}"]
        for c in (c for c in clients if c["round"] == r):
            mine = owner == c["client_id"]
            assert mine.sum() == c["local_test_texts"]
            assert np.sum(loss[mine] * tokens[mine]) / tokens[mine].sum() == \
                pytest.approx(c["global_model_local_test_loss"], rel=1e-12)
        # each client's standard error, written out text by text (not the delta method's m/(m-1)
        # sum w^2 d^2, which differs here: the splits' texts have unequal token counts)
        mine = [c for c in clients if c["round"] == r]
        assert [c["global_model_local_test_se"] ** 2 for c in mine] == pytest.approx(
            split_by_hand(split, r, len(mine))[1], rel=1e-9)
        assert any(len(set(tokens[owner == k])) > 1 for k in set(owner))


def split_by_hand(split: dict, round_num: int, num_clients: int) -> tuple[np.ndarray, np.ndarray]:
    """Each client's token-weighted loss and its SE² written out text by text (docs/method.md):
    w_i = n_i / sum n, d_i = l_i - L, h_i = n_i ** -0.5,
    SE² = sum w_i² d_i² * sum w_i² h_i / sum w_i² h_i (1 - 2 w_i + sum w²)."""
    owner, tokens, ell = (split[f"{k}_r{round_num}"] for k in ("owner", "tokens", "loss"))
    loss, se2 = [], []
    for k in range(num_clients):
        n, l = [float(x) for x in tokens[owner == k]], [float(x) for x in ell[owner == k]]
        total = sum(n)
        w = [x / total for x in n]
        big = sum(wi * li for wi, li in zip(w, l))
        sw2 = sum(wi * wi for wi in w)
        resid = sum(wi * wi * (li - big) ** 2 for wi, li in zip(w, l))
        num = sum(wi * wi * ni ** -0.5 for wi, ni in zip(w, n))
        den = sum(wi * wi * ni ** -0.5 * (1 - 2 * wi + sw2) for wi, ni in zip(w, n))
        assert len(n) >= 2  # every split of the tiny run has 2+ texts (one-text splits are pooled)
        loss.append(big)
        se2.append(resid * num / den)
    return np.array(loss), np.array(se2)


def test_the_engine_draws_nothing(tiny_model, tmp_path):
    """Figures come from a listener (cllora.report.run_figures) that the runners attach: the
    engine's loop alone writes the run's data and no figure, and never imports matplotlib."""
    out = tmp_path / "run"
    run_experiment(tiny_config(tiny_model, rounds=1), out)
    assert (out / "rounds.csv").is_file() and not list(out.glob("*.png"))
    code = ("import sys; import cllora.engine.loop; "
            "print([m for m in sys.modules if m.startswith(('matplotlib', 'cllora.report', 'cllora.flower'))])")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_saved_adapter_loads_with_peft(tiny_model, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / "run"
    run_experiment(tiny_config(tiny_model, rounds=1), out)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), out / "adapter")
    saved = records.load_checkpoint(out)[1]
    loaded = {n: p for n, p in model.named_parameters() if "lora_" in n}
    assert len(loaded) == len(saved)
    for name, tensor in saved.items():
        assert torch.allclose(loaded[name].detach(), tensor)


def test_same_seed_gives_identical_results_and_resume_matches(tiny_model, tmp_path):
    cfg = tiny_config(tiny_model, rounds=3)
    run_experiment(cfg, tmp_path / "a")
    run_experiment(cfg, tmp_path / "b")
    assert metric_columns(tmp_path / "a" / "rounds.csv") == metric_columns(tmp_path / "b" / "rounds.csv")
    # interrupted after round 1: run 1 round, then resume the same dir to 3 rounds
    run_experiment(cfg.replace(rounds=1), tmp_path / "c")
    run_experiment(cfg, tmp_path / "c", resume=True)
    assert metric_columns(tmp_path / "c" / "rounds.csv") == metric_columns(tmp_path / "a" / "rounds.csv")
    assert (tmp_path / "c" / "clients.csv").read_text().count("\n") == \
        (tmp_path / "a" / "clients.csv").read_text().count("\n")


def test_one_client_one_round_one_step_equals_plain_local_training(tiny_model, tmp_path):
    from cllora.model import attach_lora, get_adapter_state, load_model, load_tokenizer
    from cllora.train import batch_loss, length_grouped_batches

    cfg = tiny_config(tiny_model, scheme="iid", clients=1, clients_per_round=1, rounds=1,
                      batch_size=512, max_train_examples=60, lr=1e-2)
    out = tmp_path / "one"
    run_experiment(cfg, out)
    fed_state = records.load_checkpoint(out)[1]

    tokenizer = load_tokenizer(tiny_model)
    data = exp_mod.prepare_data(cfg, tokenizer, log=lambda m: None)
    base = load_model(tiny_model, "cpu", "fp32")
    torch.manual_seed(torch_seed(cfg.seed, "lora_init"))  # the engine seeds LoRA's A init the same way
    model = attach_lora(base, cfg.rank, cfg.lora_alpha, 0.0, cfg.targets)
    rng = stream(cfg.seed, "batches", 1, 0, 0)
    (batch,) = length_grouped_batches(data.train_ids, data.client_train[0], cfg.batch_size,
                                      cfg.max_length, data.pad_id, rng)
    params = [p for n, p in model.named_parameters() if "lora_" in n]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    loss, _ = batch_loss(model, batch, torch.device("cpu"))
    loss.backward()
    opt.step()
    plain = get_adapter_state(model)
    assert plain.keys() == fed_state.keys()
    for k in plain:
        assert torch.allclose(plain[k], fed_state[k], atol=1e-6), (k, (plain[k] - fed_state[k]).abs().max(), (plain[k] != fed_state[k]).sum())


def test_nan_client_is_excluded_and_recorded(tiny_model, tmp_path, monkeypatch):
    real = client_mod.client_update

    def poisoned(exp, state, cid, rnd, on_step=None, evaluate_own_split=False, **kw):
        update = real(exp, state, cid, rnd, on_step, evaluate_own_split, **kw)
        if cid == exp_mod.sample_clients(exp.config, rnd)[0]:  # a diverged adapter, finite loss
            update.state = {k: v * float("nan") for k, v in update.state.items()}
        return update

    monkeypatch.setattr("cllora.engine.loop.client_update", poisoned)
    out = tmp_path / "nan"
    summary = run_experiment(tiny_config(tiny_model, rounds=2), out)
    rounds = records.read_csv(out / "rounds.csv")
    assert [r["num_failed"] for r in rounds] == [0, 1, 1]
    assert all(math.isfinite(r["global_test_loss"]) for r in rounds)
    failed = [c for c in records.read_csv(out / "clients.csv") if c["failed"]]
    assert len(failed) == 2 and summary["failed_client_updates"] == 2
    assert all("NaN or Inf" in c["error"] for c in failed)
    assert [r["bytes_up"] for r in rounds[1:]] == [2 * summary["adapter_bytes"]] * 2  # still sent


def test_every_client_failing_stops_and_keeps_results(tiny_model, tmp_path):
    out = tmp_path / "diverge"
    with pytest.raises(RunFailed, match="every sampled client"):
        run_experiment(tiny_config(tiny_model, lr=1e30, optimizer="sgd"), out)
    assert [r["round"] for r in records.read_csv(out / "rounds.csv")] == [0]
    assert records.load_checkpoint(out)[0] == 0


def test_refuses_to_mix_runs_and_incompatible_resume(tiny_model, tmp_path):
    cfg = tiny_config(tiny_model, rounds=1)
    out = tmp_path / "run"
    run_experiment(cfg, out)
    before = (out / "rounds.csv").read_bytes()
    with pytest.raises(UserError, match="already holds a run"):
        run_experiment(cfg, out)
    with pytest.raises(UserError, match="made with alpha=0.5, not 0.9"):
        run_experiment(cfg.replace(alpha=0.9), out, resume=True)
    with pytest.raises(UserError, match="not a cllora run directory"):
        run_experiment(cfg, tmp_path / "empty", resume=True)
    assert (out / "rounds.csv").read_bytes() == before


def test_cli_bad_input_exits_2_without_traceback(tiny_model, tmp_path, capsys):
    cases = [
        (["--clients", "3", "--clients-per-round", "4"], "--clients-per-round must be <= clients"),
        (["--rounds", "0"], "rounds must be an integer >= 1"),
        (["--lr", "-1"], "lr must be a number > 0"),
        (["--resume", str(tmp_path / "x")], "not a cllora run directory"),
        (["--dataset", str(tmp_path / "missing.jsonl")], "does not exist"),
    ]
    for flags, message in cases:
        assert main(["run", "--model", tiny_model, "--quiet", "--out", str(tmp_path / "x"), *flags]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()  # nothing half-made


def test_kill_9_mid_run_then_resume_equals_uninterrupted(tiny_model, tmp_path):
    """A run killed with SIGKILL leaves only whole files; resuming finishes it identically."""
    import os
    import signal
    import subprocess
    import sys
    import time

    flags = ["--model", tiny_model, "--dataset", "sotu", "--max-train-examples", "240",
             "--max-test-examples", "24", "--clients", "6", "--clients-per-round", "2",
             "--rounds", "4", "--batch-size", "8", "--max-length", "64", "--rank", "4", "--lr", "5e-3",
             "--precision", "fp32", "--device", "cpu", "--scheme", "quantity", "--alpha", "1",
             "--seed", "5", "--quiet"]
    cli = [sys.executable, "-m", "cllora.cli", "run"]
    subprocess.run(cli + flags + ["--out", str(tmp_path / "whole")], check=True, capture_output=True)
    out = tmp_path / "killed"
    proc = subprocess.Popen(cli + flags + ["--out", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        ckpt = records.load_checkpoint(out) if (out / "checkpoint.safetensors").exists() else None
        if ckpt and ckpt[0] >= 1:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    rows = records.read_csv(out / "rounds.csv")  # parses: never half-written
    assert rows and rows[0]["round"] == 0
    subprocess.run(cli + ["--resume", str(out), "--quiet"], check=True, capture_output=True)
    assert metric_columns(out / "rounds.csv") == metric_columns(tmp_path / "whole" / "rounds.csv")


def test_bf16_training_with_fp32_evaluation(tiny_model, tmp_path):
    """--precision bf16 trains on bf16 base weights; --eval-fp32 scores with the original fp32 ones."""
    fp32 = run_experiment(tiny_config(tiny_model, rounds=1), tmp_path / "fp32")
    bf16 = run_experiment(tiny_config(tiny_model, rounds=1, precision="bf16"), tmp_path / "bf16")
    mixed = run_experiment(tiny_config(tiny_model, rounds=1, precision="bf16", eval_fp32=True),
                           tmp_path / "mixed")
    assert bf16["precision"] == mixed["precision"] == "bf16"
    # round 0 is the untouched base model (LoRA B = 0): fp32 evaluation reproduces the fp32 run
    assert mixed["initial_test_loss"] == pytest.approx(fp32["initial_test_loss"], abs=1e-5)
    assert bf16["initial_test_loss"] != pytest.approx(fp32["initial_test_loss"], abs=1e-5)
    assert bf16["initial_test_loss"] == pytest.approx(fp32["initial_test_loss"], rel=0.02)
    # the live LoRA parameters stay fp32: test_engine_rules.test_live_lora_parameters_stay_fp32...


def test_malformed_update_is_rejected_with_a_logged_reason(tiny_model, tmp_path, monkeypatch):
    real = client_mod.client_update

    def wrong_shape(exp, state, cid, rnd, on_step=None, evaluate_own_split=False, **kw):
        update = real(exp, state, cid, rnd, on_step, evaluate_own_split, **kw)
        if rnd == 1 and cid == exp_mod.sample_clients(exp.config, rnd)[-1]:
            key = next(iter(update.state))
            update.state[key] = torch.zeros(3, 3)
        return update

    monkeypatch.setattr("cllora.engine.loop.client_update", wrong_shape)
    lines = []
    run_experiment(tiny_config(tiny_model, rounds=2), tmp_path / "shape", log=lines.append)
    assert any("excluded" in line and "has shape (3, 3), expected" in line for line in lines)
    rounds = records.read_csv(tmp_path / "shape" / "rounds.csv")
    assert [r["num_failed"] for r in rounds] == [0, 1, 0]
