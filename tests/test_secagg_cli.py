"""Secure aggregation's settings on bad or refused input, through the command line: exit 2 with one
sentence naming the value and why, nothing written (`cllora run` and `cllora flower-app`)."""

from __future__ import annotations

import pytest
from test_cli_checks import refused, tiny_args

from cllora.cli import main

FLOWER = ("--engine", "flower-sim", "--secagg")


@pytest.mark.parametrize("flags, message", [
    (["--secagg"], "secagg (True) is only used with engine flower-sim, not with engine 'inprocess'"),
    (["--engine", "flower-sim", "--secagg-shares", "3"], "--secagg-shares = 3 needs secagg"),
    ([*FLOWER, "--strategy", "scaffold"], "strategy 'scaffold' does not work with secure aggregation (each "
                                           "client also sends its own control-variate change"),
    ([*FLOWER, "--strategy", "flora"], "strategy 'flora' does not work with secure aggregation (the server "
                                        "stacks every client's own factors"),
    ([*FLOWER, "--strategy", "fedex-lora"], "strategy 'fedex-lora' does not work with secure aggregation"),
    ([*FLOWER, "--strategy", "fedsa-lora"], "strategy 'fedsa-lora' does not work with secure aggregation"),
    ([*FLOWER, "--client-ranks", "1,2,2,2"], "--client-ranks = '1,2,2,2' does not work with secure aggregation"),
    ([*FLOWER, "--dp-clip", "1", "--dp-noise", "1"], "--dp-clip = 1.0 with --secagg: central DP"),
    ([*FLOWER, "--eval-local-models", "1"], "--eval-local-models = 1 with --secagg"),
    ([*FLOWER, "--clients-per-round", "1"], "secure aggregation needs at least 2 clients a round"),
    ([*FLOWER, "--secagg-shares", "5"], "--secagg-shares must be an integer in [2, 2], got 5"),
    ([*FLOWER, "--clients-per-round", "4", "--secagg-threshold", "5"],
     "--secagg-threshold must be an integer in [2, 4], got 5"),
    ([*FLOWER, "--clients-per-round", "4", "--secagg-threshold", "1"],
     "--secagg-threshold must be an integer in [2, 4], got 1"),
])
def test_bad_or_refused_secagg_settings_exit_2_and_write_nothing(tiny_model, tmp_path, capsys, flags, message):
    out = tmp_path / "run"
    refused(capsys, tiny_args(tiny_model, out, *flags), message)
    assert not out.exists()


@pytest.mark.parametrize("toml, message", [
    ('secagg = "yes"', "must be true or false, got 'yes'"),
    ("secagg = true\nsecagg_threshold = 2.5", "must be an integer or left out, got 2.5"),
    ('secagg = true\nsecagg_shares = "all"', "must be an integer or left out, got 'all'"),
])
def test_wrong_toml_types_of_secagg_settings_exit_2(tiny_model, tmp_path, capsys, toml, message):
    (tmp_path / "exp.toml").write_text(f'[run]\nengine = "flower-sim"\n{toml}\n')
    out = tmp_path / "run"
    err = refused(capsys, tiny_args(tiny_model, out, "--config", str(tmp_path / "exp.toml")), message)
    assert toml.splitlines()[-1].split(" =")[0] + " (in" in err  # the setting and its file are named
    assert not out.exists()


def test_flower_app_secagg_names_the_secure_clientapp_and_refuses_bad_settings(tmp_path, capsys):
    app = tmp_path / "app"
    assert main(["flower-app", str(app), "--secagg", "--secagg-threshold", "2", "--out", str(tmp_path / "o")]) == 0
    text = (app / "pyproject.toml").read_text()
    assert 'clientapp = "cllora.flower.client:secure_client_app"' in text
    assert "secagg = true" in text and "secagg-threshold = 2" in text
    capsys.readouterr()
    refused(capsys, ["flower-app", str(tmp_path / "bad"), "--secagg", "--secagg-threshold", "3"],
            "--secagg-threshold must be an integer in [2, 2], got 3")
    refused(capsys, ["flower-app", str(tmp_path / "bad"), "--secagg-shares", "3"], "--secagg-shares = 3 needs secagg")
    (tmp_path / "dp.toml").write_text("[run]\nsecagg = true\ndp_clip = 1.0\ndp_noise = 1.0\n")
    refused(capsys, ["flower-app", str(tmp_path / "bad"), "--config", str(tmp_path / "dp.toml")],
            "distributed DP")
    assert not (tmp_path / "bad").exists()
    assert main(["flower-app", str(tmp_path / "plain"), "--out", str(tmp_path / "o")]) == 0
    assert 'clientapp = "cllora.flower.client:client_app"' in (tmp_path / "plain" / "pyproject.toml").read_text()
