"""RunConfig validation and loading."""

import pytest

from cllora.config import RunConfig, from_dict, load_config
from cllora.errors import UserError


@pytest.mark.parametrize("changes, message", [
    ({"alpha": 0}, "alpha must be a number > 0, got 0"),
    ({"alpha": -0.5}, "alpha must be a number > 0, got -0.5"),
    ({"alpha": "x"}, "alpha must be a number > 0"),
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
