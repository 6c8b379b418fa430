"""Settings named for a reader (cllora.analysis.setting_names): a sweep and the keys that set a
setting apart, never the whole key list; the settings matrix; labels in claim records renamed."""

from __future__ import annotations

import json

from cllora.analysis.conditions import setting_key, setting_labels
from cllora.analysis.setting_names import rename, setting_names, settings_matrix

BASE = {"model": "smollm2-135m", "dataset": "sotu", "max_train_examples": 400, "max_length": 128,
        "clients": 20, "clients_per_round": 2, "rounds": 5, "local_epochs": 1, "strategy": "fedavg",
        "fairness_every": 5, "replicate": 0, "precision": "auto", "lr": 0.002, "scheme": "iid", "seed": 0}


def settings(*variants):
    """{setting key: config} and {setting key: sweep} of (sweep, overrides) pairs."""
    configs, sweeps = {}, {}
    for sweep, extra in variants:
        config = {**BASE, **extra}
        configs[setting_key(config)] = config
        sweeps[setting_key(config)] = sweep
    return configs, sweeps


PUBLISHED = settings(
    ("study-quantity", {"clients": 10, "rounds": 6, "fairness_every": 6}),
    ("study-strategies", {"strategy": "fedavg"}), ("study-strategies", {"strategy": "fedadam"}),
    ("study-null", {"rounds": 6, "local_epochs": 2, "replicate": 0}),
    ("study-null", {"rounds": 6, "local_epochs": 2, "replicate": 1}),
    ("study-privacy", {"dp_clip": 0.5, "dp_target_epsilon": 8.0, "dp_delta": 1e-5}),
    ("study-privacy", {"dp_clip": 0.5, "dp_target_epsilon": float("inf"), "dp_delta": 1e-5}),
    ("study-long-context", {"dataset": "sotu-chunks", "max_length": 512}))


def test_a_setting_is_named_by_its_sweep_and_what_sets_it_apart():
    names = setting_names(*PUBLISHED)
    assert sorted(names.values()) == sorted([
        "study-quantity · 10 clients, 2 a round · 6 rounds × 1 epoch",
        "study-strategies · fedavg", "study-strategies · fedadam",
        "study-null · 6 rounds × 2 epochs · replicate 0", "study-null · 6 rounds × 2 epochs · replicate 1",
        "study-privacy · DP ε = 8, clip 0.5", "study-privacy · DP ε = ∞, clip 0.5",
        "study-long-context · sotu-chunks, 512 tokens"])
    assert all("=" not in n.replace("ε = ", "") for n in names.values())  # no key=value dumps


def test_a_short_name_keeps_only_what_varies_within_the_sweep():
    """The forest plot's row labels: a sweep's folder already tells it from the others."""
    names = setting_names(*PUBLISHED, short=True)
    assert sorted(names.values()) == sorted([
        "study-quantity", "study-strategies · fedavg", "study-strategies · fedadam",
        "study-null · replicate 0", "study-null · replicate 1",
        "study-privacy · DP ε = 8, clip 0.5", "study-privacy · DP ε = ∞, clip 0.5", "study-long-context"])
    configs, sweeps = settings(("", {"lr": 0.001}), ("", {"lr": 0.002}))  # no sweep: still told apart
    assert sorted(setting_names(configs, sweeps, short=True).values()) == ["lr=0.001", "lr=0.002"]


def test_names_stay_apart_where_only_a_quiet_key_differs():
    configs, sweeps = settings(("s", {"fairness_every": 1}), ("s", {"fairness_every": 5}))
    assert sorted(setting_names(configs, sweeps).values()) == ["s · fairness_every=1", "s · fairness_every=5"]
    configs, sweeps = settings(("", {"lr": 0.001}), ("", {"lr": 0.002}))  # no sweep at all
    assert sorted(setting_names(configs, sweeps).values()) == ["lr=0.001", "lr=0.002"]
    assert setting_names(*settings(("one-sweep", {}))) == {setting_key(BASE): "one-sweep"}


def test_the_settings_matrix_holds_only_the_keys_that_differ():
    configs, sweeps = PUBLISHED
    names = setting_names(configs, sweeps)
    keys, rows, shared = settings_matrix(configs, names)
    assert {"clients", "strategy", "dp_target_epsilon", "replicate", "dataset"} <= set(keys)
    assert "lr" not in keys and shared["lr"] == "0.002" and shared["model"] == "smollm2-135m"
    assert "scheme" not in keys + list(shared) and "seed" not in keys + list(shared)
    assert [row[0] for row in rows] == list(names.values()) and all(len(r) == len(keys) + 1 for r in rows)


def test_claim_labels_are_renamed_once():
    configs, sweeps = PUBLISHED
    labels, names = setting_labels(configs), setting_names(configs, sweeps)
    key = next(k for k, c in configs.items() if c["clients"] == 10)
    line = f"{labels[key]}: IID 3.49 ± 0.05; effect -0.0163 [-0.0566, +0.0240]"
    assert rename(line, labels, names) == ("study-quantity · 10 clients, 2 a round · 6 rounds × 1 epoch: "
                                           "IID 3.49 ± 0.05; effect -0.0163 [-0.0566, +0.0240]")
    assert len(labels[key]) > 150  # what the evidence lines carried before
    # a name that holds another setting's label (a bare model name) is not renamed again
    one = {"a": "m"}
    assert rename("m vs x", one, {"a": "sweep · m"}) == "sweep · m vs x"
    assert json.dumps(rename("no label here", labels, names)) == '"no label here"'


def test_flags_a_newer_cllora_records_at_their_default_are_not_named():
    """Runs written after secagg existed record secagg = False; older runs have no key. Neither
    that nor dp_seeded_noise_voids_guarantee = False sets a setting apart in its name."""
    from types import SimpleNamespace

    from cllora.analysis.plans import Sweep
    from cllora.analysis.setting_names import run_settings

    def run(folder, extra):
        return SimpleNamespace(name=f"{folder}/r", config={**BASE, **extra}, sweep=Sweep(folder, folder, None, None))
    names = setting_names(*run_settings([run("old", {}), run("new", {"rounds": 10, "secagg": False,
                                                                     "dp_seeded_noise_voids_guarantee": False})]))
    assert sorted(names.values()) == ["new · 10 rounds × 1 epoch", "old"]
