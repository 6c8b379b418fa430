"""Issue 11's measurements end to end on the tiny model: loss by length class, noise-aware fairness
columns, test_losses.npz, the one-pass evaluation and its schedule, --eval-max-length, trackers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_engine import split_by_hand, tiny_config

from cllora import records
from cllora.cli import main
from cllora.config.settings import RunConfig
from cllora.engine import evaluation, tracking
from cllora.engine.evaluation import evaluate_clients, evaluate_test
from cllora.engine.experiment import check_local_test_sizes, prepare_data
from cllora.engine.loop import InProcessClients, run_experiment
from cllora.engine.progress import RunProgress
from cllora.errors import UserError


@pytest.fixture(scope="module")
def measured_run(tiny_model, tmp_path_factory):
    """One 2-round run trained on 32-token texts, its test texts scored on up to 96 tokens."""
    out = tmp_path_factory.mktemp("measured") / "run"
    config = tiny_config(tiny_model, rounds=2, max_length=32, eval_max_length=96)
    summary = run_experiment(config, out, log=lambda m: None)
    return config, out, summary


def _weighted(loss, tokens):
    return float(np.sum(loss * tokens) / np.sum(tokens))


def test_rounds_csv_has_class_losses_and_fairness_columns(measured_run):
    config, out, _ = measured_run
    header = (out / "rounds.csv").read_text().splitlines()[0].split(",")
    assert header == list(records.round_columns(5))
    assert {"test_loss_c0", "test_loss_c4", "fairness_var_corrected", "fairness_se_mean", "fairness_jain",
            "fairness_gini", "fairness_worst10"} <= set(header)
    clients = records.read_csv(out / "clients.csv")
    split = records.read_npz(out / records.SPLIT_LOSSES)
    for row in records.read_csv(out / "rounds.csv"):  # recomputed by hand from the per-text losses
        mine = [c for c in clients if c["round"] == row["round"]]
        loss, se2 = split_by_hand(split, row["round"], len(mine))
        assert [c["global_model_local_test_loss"] for c in mine] == pytest.approx(loss, rel=1e-9)
        assert [c["global_model_local_test_se"] ** 2 for c in mine] == pytest.approx(se2, rel=1e-9)
        n = len(mine)
        assert row["fairness_var_corrected"] == pytest.approx(  # not floored
            np.mean((loss - loss.mean()) ** 2) - (n - 1) / n * np.mean(se2), rel=1e-9, abs=1e-12)
        ppl = np.exp(loss)  # Jain and Gini of the raw per-client perplexities
        assert row["fairness_jain"] == pytest.approx(ppl.sum() ** 2 / (n * np.sum(ppl ** 2)), rel=1e-9)
        pairs = np.abs(ppl[:, None] - ppl[None, :]).sum()
        assert row["fairness_gini"] == pytest.approx(pairs / (2 * n * n * ppl.mean()), rel=1e-9)
    assert any(r["fairness_var_corrected"] < r["fairness_var"] for r in records.read_csv(out / "rounds.csv"))
    r2 = [c for c in clients if c["round"] == 2]
    rounds = records.read_csv(out / "rounds.csv")
    se = [c["global_model_local_test_se"] for c in r2]
    assert rounds[2]["fairness_se_mean"] == pytest.approx(np.mean(se))
    assert rounds[2]["fairness_var"] == pytest.approx(np.var([c["global_model_local_test_loss"] for c in r2]))


def test_local_models_own_split_losses_have_standard_errors(measured_run):
    # each trained client's local model: its own-split loss with a standard error, and the round's
    # unbiased (not floored) corrected variance recomputed by hand from clients.csv
    _, out, _ = measured_run
    clients, rounds = records.read_csv(out / "clients.csv"), records.read_csv(out / "rounds.csv")
    checked = 0
    for row in rounds[1:]:
        mine = [c for c in clients if c["round"] == row["round"] and c["local_model_test_loss"] is not None]
        assert mine and all(c["local_model_test_se"] > 0 for c in mine)
        loss = np.array([c["local_model_test_loss"] for c in mine])
        se = np.array([c["local_model_test_se"] for c in mine])
        n = len(mine)
        assert row["local_models_var_corrected"] == pytest.approx(
            np.var(loss) - (n - 1) / n * np.mean(se ** 2), rel=1e-9, abs=1e-12)
        checked += 1
    assert checked == 2 and rounds[0]["local_models_var_corrected"] is None


def test_local_test_texts_match_the_partition(measured_run):
    _, out, _ = measured_run
    part = records.read_json(out / "partition.json")
    sizes = [len(c["local_test_indices"]) for c in part["clients"]]
    r0 = [c for c in records.read_csv(out / "clients.csv") if c["round"] == 0]
    assert [c["local_test_texts"] for c in r0] == sizes


def test_test_losses_npz_matches_the_rounds_and_the_texts(measured_run, tiny_model):
    config, out, summary = measured_run
    npz = np.load(out / "test_losses.npz")
    assert sorted(npz.files) == sorted(["text_index", "tokens", "length_class", "loss_r0", "loss_final",
                                        "loss_best", "final_round", "best_round"])
    rounds = records.read_csv(out / "rounds.csv")
    assert int(npz["final_round"]) == 2 and int(npz["best_round"]) == summary["best_round"]
    assert _weighted(npz["loss_r0"], npz["tokens"]) == pytest.approx(rounds[0]["global_test_loss"], rel=1e-9)
    assert _weighted(npz["loss_final"], npz["tokens"]) == pytest.approx(rounds[2]["global_test_loss"], rel=1e-9)
    assert _weighted(npz["loss_best"], npz["tokens"]) == pytest.approx(summary["best_test_loss"], rel=1e-9)
    # each text scored on its first min(length, 96) tokens, classed by full length with the training edges
    from transformers import AutoTokenizer

    data = prepare_data(config, AutoTokenizer.from_pretrained(tiny_model), lambda m: None)
    full = np.array([len(data.test_ids[i]) for i in npz["text_index"]])
    assert npz["tokens"].tolist() == (np.minimum(full, 96) - 1).tolist()
    assert npz["tokens"].max() > 31  # longer than the training cut
    assert npz["length_class"].tolist() == np.searchsorted(data.class_edges, full, side="left").tolist()
    for c in range(5):
        mine = npz["length_class"] == c
        if mine.any():
            assert rounds[2][f"test_loss_c{c}"] == pytest.approx(
                _weighted(npz["loss_final"][mine], npz["tokens"][mine]), rel=1e-9)


def test_local_models_are_not_scored_on_the_test_set_by_default(measured_run):
    _, out, _ = measured_run
    for c in records.read_csv(out / "clients.csv"):
        assert c["local_model_global_test_loss"] is None
        assert (c["local_model_test_loss"] is not None) == bool(c["participated"])


def test_one_pass_equals_the_two_separate_passes(tiny_model, monkeypatch):
    from cllora.engine import experiment as exp_mod
    from cllora.engine.runtime import build_runtime

    # bf16 and texts of many lengths: a batch's padding shows in the last bits of its scores
    config = tiny_config(tiny_model, max_length=160, precision="bf16")
    runtime = build_runtime(config, load_model=False, log=lambda m: None)
    data = prepare_data(config, runtime.tokenizer, lambda m: None)
    exp = exp_mod.prepare_experiment(config, runtime.load_base(config, lambda m: None), runtime.tokenizer,
                                     runtime.device, runtime.precision, data, lambda m: None)
    try:
        separate_test = evaluate_test(exp, exp.initial_state)
        separate_clients = evaluate_clients(exp, exp.initial_state)
        calls = []
        real = evaluation.evaluate
        monkeypatch.setattr(evaluation, "evaluate", lambda model, batches, *a: calls.append(
            sum(len(b.rows) for b in batches)) or real(model, batches, *a))
        scores = evaluation.score_round(exp, InProcessClients(exp, RunProgress(False)), exp.initial_state, [], 0)
    finally:
        exp_mod.release(exp)
    scored = len(data.test_ids) + sum(len(rows) for rows in data.client_test)
    assert calls == [scored]  # one pass over the union
    # the test texts are batched apart from the clients' texts, so the test loss is the very same
    # number with or without the clients' splits, whatever the partition puts in them
    assert scores.test_loss == separate_test
    np.testing.assert_allclose(scores.client_losses, separate_clients, rtol=1e-5)


def test_schedule_of_fairness_and_local_model_passes(tiny_model, tmp_path):
    out = tmp_path / "run"
    run_experiment(tiny_config(tiny_model, rounds=3, fairness_every=2, eval_local_models=2), out,
                   log=lambda m: None)
    rounds = records.read_csv(out / "rounds.csv")
    assert [r["fairness_var"] is not None for r in rounds] == [True, False, True, True]
    assert all(r["test_loss_c0"] is not None and r["global_test_loss"] is not None for r in rounds)
    local = {}
    for c in records.read_csv(out / "clients.csv"):
        if c["participated"]:
            local.setdefault(c["round"], []).append(c["local_model_global_test_loss"] is not None)
    assert local == {1: [False, False], 2: [True, True], 3: [True, True]}


def test_is_due():
    assert [evaluation.is_due(2, r, 5) for r in range(6)] == [True, False, True, False, True, True]
    assert not any(evaluation.is_due(0, r, 5) for r in range(6))


def test_save_test_losses_keeps_round_0_and_the_best(tmp_path):
    def texts(loss):
        return evaluation.TestTexts(np.array([0, 2]), np.array([1, 3]), np.array(loss), np.array([0, 1]))

    evaluation.save_test_losses(tmp_path, 0, texts([4.0, 4.0]), 4.0)
    evaluation.save_test_losses(tmp_path, 1, texts([2.0, 2.0]), 2.0)
    evaluation.save_test_losses(tmp_path, 2, texts([3.0, 1.0]), 1.5)
    evaluation.save_test_losses(tmp_path, 3, texts([5.0, 1.0]), 2.0)
    npz = np.load(tmp_path / "test_losses.npz")
    assert npz["loss_r0"].tolist() == [4.0, 4.0] and npz["loss_best"].tolist() == [3.0, 1.0]
    assert npz["loss_final"].tolist() == [5.0, 1.0]
    assert int(npz["best_round"]) == 2 and int(npz["final_round"]) == 3
    assert npz["text_index"].dtype == np.int64 and npz["loss_r0"].dtype == np.float64


@pytest.mark.parametrize("flags, message", [
    (["--eval-max-length", "1"], "--eval-max-length must be an integer >= 2"),
    (["--eval-max-length", "600"], "above the model's context of 512"),
    (["--min-local-test", "999"], "larger than every client's local test split"),
])
def test_bad_measurement_input_exits_2_and_writes_nothing(tiny_model, tmp_path, capsys, flags, message):
    out = tmp_path / "x"
    argv = ["run", "--model", tiny_model, "--quiet", "--out", str(out), "--max-train-examples", "120",
            "--max-test-examples", "12", "--clients", "4", "--rounds", "1", "--precision", "fp32", *flags]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_min_local_test_warning_names_the_small_clients():
    said = []
    check_local_test_sizes([3, 1, 5, 2], 3, said.append)
    assert len(said) == 1 and said[0].endswith(": 1, 3") and "fewer than 3" in said[0]
    with pytest.raises(UserError, match="min_local_test \\(6\\)"):
        check_local_test_sizes([3, 1, 5, 2], 6, said.append)


def test_missing_tracker_package_is_a_user_error_naming_the_extra(monkeypatch):
    real = tracking.importlib.util.find_spec
    monkeypatch.setattr(tracking.importlib.util, "find_spec",
                        lambda name: None if name in ("tensorboard", "mlflow") else real(name))
    for kind in ("tensorboard", "mlflow"):
        with pytest.raises(UserError, match=f"cllora\\[{kind}\\]"):
            tracking.check_available(kind)
    with pytest.raises(UserError, match="log_to"):
        run_experiment(RunConfig(log_to="tensorboard"), "/nonexistent/never-made")


def test_tensorboard_tracker_logs_every_evaluated_round(tiny_model, tmp_path):
    # an optional extra that `make install` installs (Makefile), so this runs in make test and CI
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    run_experiment(tiny_config(tiny_model, rounds=2, log_to="tensorboard"), out, log=lambda m: None)
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    logged = [(e.step, e.value) for e in events.Scalars("global_test_loss")]
    rows = records.read_csv(out / "rounds.csv")
    assert [s for s, _ in logged] == [0, 1, 2]
    assert [v for _, v in logged] == pytest.approx([r["global_test_loss"] for r in rows], rel=1e-6)
    assert "fairness_var_corrected" in events.Tags()["scalars"]


def test_mlflow_tracker_logs_every_evaluated_round(tiny_model, tmp_path):
    import mlflow  # an optional extra that `make install` installs (Makefile): runs in make test and CI

    out = tmp_path / "run"
    run_experiment(tiny_config(tiny_model, rounds=1, log_to="mlflow"), out, log=lambda m: None)
    client = mlflow.tracking.MlflowClient((out / "mlruns").resolve().as_uri())
    run = client.search_runs([client.get_experiment_by_name("cllora").experiment_id])[0]
    history = client.get_metric_history(run.info.run_id, "global_test_loss")
    assert sorted(m.step for m in history) == [0, 1]
    assert not math.isnan(history[0].value)
