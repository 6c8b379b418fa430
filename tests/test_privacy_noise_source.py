"""Where client-level DP's randomness comes from (issue 31): secret by default, seeded only behind
dp_seeded_noise_voids_guarantee. The attack a reviewer ran on the published runs (regenerate the
noise from the seed in config.json, subtract it) recovers the noiseless clipped mean from a seeded
release and fails on a secure one; config.json records the source; a secure run resumes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cllora import privacy, records
from cllora.cli import main
from cllora.config.settings import RunConfig
from cllora.engine import private_round
from cllora.engine.client import ClientUpdate
from cllora.engine.loop import run_experiment
from cllora.privacy.randomness import noise_source_of, secure_normal, secure_sample
from cllora.seeds import stream
from cllora.train import TrainResult
from wording import as_keys


def _round(seeded: bool):
    """One DP round's release over hand-made updates: (config, global, released, true clipped mean)."""
    cfg = RunConfig(clients=20, clients_per_round=4, rounds=5, dp_clip=0.5, dp_noise=1.3, seed=7,
                    dp_seeded_noise_voids_guarantee=seeded)
    gen = torch.Generator().manual_seed(0)
    glob = {"a": torch.randn(8, 16, generator=gen), "b": torch.randn(16, 8, generator=gen)}
    states = [{k: v + 0.3 * torch.randn(v.shape, generator=gen) for k, v in glob.items()} for _ in range(4)]
    good = [ClientUpdate(i, s, 10, TrainResult(1.0, 1, 1, 0.0)) for i, s in enumerate(states)]
    dp = private_round.DpPlan(0.5, 1.3, 1e-5, 4, (1.0,) * 5, np.zeros(20, np.int64), 5,
                              private_round.noise_source(cfg))
    reply, _ = private_round.private_reply(dp, cfg, glob, good, 3)
    deltas, _, _ = privacy.clipped_deltas(glob, states, 0.5)
    truth = {k: sum(d[k] for d in deltas) / 4 for k in glob}
    return cfg, glob, reply.state, truth


def _attack(cfg: RunConfig, glob: dict, released: dict, round_num: int) -> dict:
    """What anyone holding config.json does: regenerate the round's noise from (seed, round) in the
    engine's order (sorted tensor names) and subtract zC/k of it from the released update."""
    rng = stream(cfg.seed, "dp_noise", round_num, replicate=cfg.replicate)
    sigma, k = cfg.dp_noise * cfg.dp_clip, cfg.clients_per_round
    guess = {}
    for key in sorted(glob):
        noise = torch.from_numpy(rng.standard_normal(tuple(glob[key].shape)))
        guess[key] = released[key].double() - glob[key].double() - sigma * noise / k
    return guess


def test_seeded_noise_can_be_subtracted_and_secure_noise_cannot():
    cfg, glob, released, truth = _round(seeded=True)
    guess = _attack(cfg, glob, released, 3)
    seeded_error = max(float((guess[k] - truth[k]).abs().max()) for k in glob)
    assert seeded_error < 1e-5  # float32 rounding of the released adapter only
    cfg, glob, released, truth = _round(seeded=False)
    guess = _attack(cfg, glob, released, 3)
    residual = torch.cat([(guess[k] - truth[k]).flatten() for k in glob])
    std = cfg.dp_noise * cfg.dp_clip / cfg.clients_per_round  # 0.1625 a coordinate
    # the attack leaves the secret noise plus the (independent) regenerated one: std sqrt(2) * zC/k
    assert float(residual.std()) == pytest.approx(np.sqrt(2) * std, rel=0.1)


def test_secure_normal_is_standard_normal_and_never_repeats():
    x = secure_normal((200_000,))
    assert abs(x.mean()) < 0.01 and x.std() == pytest.approx(1.0, abs=0.01)
    assert np.mean(np.abs(x) > 1.96) == pytest.approx(0.05, abs=0.003)
    assert not np.array_equal(secure_normal((3, 5)), secure_normal((3, 5)))
    assert secure_normal((3, 5)).shape == (3, 5)
    picks = [tuple(secure_sample(20, 2)) for _ in range(200)]
    assert all(len(set(p)) == 2 and all(0 <= c < 20 for c in p) for p in picks)
    assert len(set(picks)) > 50  # not a function of anything public
    counts = np.bincount([c for p in (secure_sample(10, 3) for _ in range(3000)) for c in p], minlength=10)
    assert counts.min() > 800 and counts.max() < 1000  # each client 900 expected (q = 0.3)


def test_runs_without_the_record_read_as_seeded():
    assert noise_source_of({"config": {"dp_clip": None}}) is None
    assert noise_source_of({"config": {"dp_clip": 0.5}}) == "seeded"
    assert noise_source_of({"config": {"dp_clip": 0.5}, "dp_noise_source": "os"}) == "os"


def _config(model: str, **changes) -> RunConfig:
    base = dict(model=model, dataset="sotu", max_train_examples=240, max_test_examples=24,
                clients=6, clients_per_round=2, rounds=2, batch_size=8, max_length=64, rank=4,
                lr=5e-3, precision="fp32", device="cpu", scheme="length", alpha=0.5, seed=3,
                dp_clip=0.05, dp_noise=0.5)
    return RunConfig().replace(**{**base, **changes})


def test_secure_run_records_its_source_differs_each_time_and_resumes(tiny_model, tmp_path):
    cfg = _config(tiny_model)
    run_experiment(cfg, tmp_path / "a", log=lambda m: None)
    run_experiment(cfg, tmp_path / "b", log=lambda m: None)
    assert json.loads((tmp_path / "a" / "config.json").read_text())["dp_noise_source"] == "os"
    a, b = records.load_checkpoint(tmp_path / "a")[1], records.load_checkpoint(tmp_path / "b")[1]
    assert not all(torch.equal(a[k], b[k]) for k in a)  # same seed, different noise
    run_experiment(cfg.replace(rounds=3), tmp_path / "a", resume=True, log=lambda m: None)
    rows = records.read_csv(tmp_path / "a" / "rounds.csv")
    assert [r["round"] for r in rows] == [0, 1, 2, 3]
    assert rows[3]["dp_epsilon"] == pytest.approx(privacy.epsilons(0.5, 2, 6, 3, privacy.default_delta(6))[-1])
    saved = json.loads((tmp_path / "a" / "config.json").read_text())
    assert saved["dp_noise_source"] == "os" and len(saved["resumes"]) == 1
    assert records.load_checkpoint(tmp_path / "a")[0] == 3
    seeded = _config(tiny_model, dp_seeded_noise_voids_guarantee=True)
    run_experiment(seeded, tmp_path / "s", log=lambda m: None)
    assert json.loads((tmp_path / "s" / "config.json").read_text())["dp_noise_source"] == "seeded"


def test_cli_refuses_a_bad_seeded_noise_flag(tiny_model, tmp_path, capsys):
    out = tmp_path / "x"
    toml = tmp_path / "bad.toml"
    toml.write_text('[run]\ndp_clip = 1.0\ndp_noise = 1.0\ndp_seeded_noise_voids_guarantee = "yes"\n')
    base = ["run", "--model", tiny_model, "--clients", "4", "--clients-per-round", "2", "--rounds", "1",
            "--device", "cpu", "--quiet", "--out", str(out)]
    cases = [(["--dp-seeded-noise-voids-guarantee"], "dp_seeded_noise_voids_guarantee = True needs dp_clip"),
             (["--config", str(toml)], "dp_seeded_noise_voids_guarantee must be true or false")]
    for flags, message in cases:
        assert main(base + flags) == 2, flags
        err = capsys.readouterr().err
        assert message in as_keys(err) and "Traceback" not in err, err
    assert not out.exists()
