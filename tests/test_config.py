"""RunConfig validation and loading."""

import re

import pytest

from cllora.config.load import check_given, load_config
from cllora.config.settings import RunConfig, from_dict
from cllora.errors import UserError


@pytest.mark.parametrize("changes, message", [
    ({"alpha": 0}, "alpha must be a number > 0, got 0"),
    ({"alpha": -0.5}, "alpha must be a number > 0, got -0.5"),
    ({"alpha": "x"}, "alpha must be a number, got 'x'"),
    ({"lr": 0.0}, "lr must be a number > 0"),
    ({"rounds": 0}, "rounds must be an integer >= 1, got 0"),
    ({"rank": 0}, "rank must be an integer >= 1"),
    ({"clients": 0}, "clients must be an integer >= 1"),
    ({"clients": 3, "clients_per_round": 4}, r"clients_per_round must be <= clients \(3\), got 4"),
    ({"num_classes": 1}, "num_classes must be an integer >= 2"),
    ({"class_edges": (5.0, 3.0, 9.0, 10.0)}, "strictly increasing"),
    ({"class_edges": (1.0, 2.0)}, "must hold num_classes - 1 = 4 values"),
    ({"scheme": "label"}, "scheme must be one of iid, length, quantity, natural; got 'label'"),
    ({"optimizer": "adam"}, "optimizer must be one of adamw, sgd"),
    ({"test_fraction": 1.0}, "test_fraction must be between 0 and 1"),
])
def test_bad_values_name_themselves(changes, message):
    with pytest.raises(UserError, match=message):
        RunConfig().replace(**changes)


def test_unknown_key_is_named():
    with pytest.raises(UserError, match="config key 'colour' is not a run setting"):
        from_dict({"colour": "red"})


def test_toml_then_overrides(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text('[run]\nscheme = "length"\nalpha = 1\nclients = 5\ntargets = ["q_proj"]\n')
    cfg = load_config(path, alpha=0.1, rounds=None)
    assert (cfg.scheme, cfg.alpha, cfg.clients, cfg.targets) == ("length", 0.1, 5, ("q_proj",))
    assert cfg.rounds == RunConfig().rounds
    assert from_dict(cfg.to_dict()) == cfg


def test_bad_toml_and_missing_file(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("scheme = \n")
    with pytest.raises(UserError, match="not valid TOML"):
        load_config(bad)


def test_to_toml_round_trips_through_a_config_file(tmp_path):
    config = RunConfig(scheme="length", alpha=0.1, class_edges=(20.0, 40.0, 80.0, 160.0),
                       targets=("q_proj", "k_proj"), round_timeout=30.0, eval_fp32=True)
    (tmp_path / "exp.toml").write_text(config.to_toml())
    assert load_config(tmp_path / "exp.toml") == config


@pytest.mark.parametrize("toml, message", [
    ('eval_fp32 = "no"', "eval_fp32 must be true or false, got 'no'"),
    ("eval_fp32 = 1", "eval_fp32 must be true or false, got 1"),
    ("targets = 5", "targets must be a list of names or comma-separated text, got 5"),
    ('targets = ["q_proj", 3]', "targets must be a list of names"),
    ('seed = "a"', "seed must be an integer, got 'a'"),
    ("rounds = 2.5", "rounds must be an integer, got 2.5"),
    ("rounds = true", "rounds must be an integer, got True"),
    ('lr = "0.1"', "lr must be a number, got '0.1'"),
    ('max_train_examples = "all"', "max_train_examples must be an integer or left out, got 'all'"),
    ('class_edges = "20,x,80,160"', "class_edges must be a list of numbers or comma-separated numbers"),
    ("class_edges = [20, true, 80, 160]", "class_edges must be a list of numbers"),
    ("text_column = 3", "text_column must be text (in quotes) or left out, got 3"),
    ("scheme = 3", "scheme must be one of iid, length, quantity, natural; got 3"),
])
def test_wrong_toml_types_name_the_setting(tmp_path, toml, message):
    path = tmp_path / "exp.toml"
    path.write_text(f"[run]\n{toml}\n")
    with pytest.raises(UserError, match=re.escape(message)):
        load_config(path)


def test_values_take_their_field_form():
    config = from_dict({"alpha": 1, "targets": "q_proj, k_proj", "class_edges": "20,40,80,160",
                        "scheme": "length"})
    assert config.alpha == 1.0 and isinstance(config.alpha, float)
    assert config.targets == ("q_proj", "k_proj") and config.class_edges == (20.0, 40.0, 80.0, 160.0)
    assert from_dict({"class_edges": [20, 40, 80, 160]}).class_edges == (20.0, 40.0, 80.0, 160.0)


@pytest.mark.parametrize("changes, given, message", [
    ({"scheme": "iid", "alpha": 0.1}, ["alpha"], "alpha (0.1) is only used with scheme length/quantity, "
                                                "not with scheme 'iid'"),
    ({"scheme": "natural", "client_key": "party", "alpha": 0.5}, ["alpha"], "not with scheme 'natural'"),
    ({"scheme": "length", "client_key": "president"}, ["client_key"], "client_key ('president') is only "
                                                                      "used with scheme natural"),
    ({"small_groups": "merge"}, ["small_groups"], "small_groups ('merge') is only used with scheme natural"),
    ({"round_timeout": 30.0}, ["round_timeout"], "round_timeout (30.0) is only used with engine flower-sim, "
                                                 "not with engine 'inprocess'"),
])
def test_a_setting_given_where_it_is_ignored_is_refused(changes, given, message):
    config = RunConfig().replace(**changes)  # a grid's cells may carry it: the config itself is fine
    with pytest.raises(UserError, match=re.escape(message)):
        check_given(config, given)
    check_given(config, [])  # not given: nothing to refuse


def test_a_setting_given_where_it_applies_is_accepted():
    check_given(RunConfig(scheme="length", alpha=0.1), ["alpha", "scheme"])
    check_given(RunConfig(scheme="natural", client_key="president", small_groups="merge"),
                ["client_key", "small_groups"])
    check_given(RunConfig(engine="flower-sim", round_timeout=30.0), ["round_timeout"])
