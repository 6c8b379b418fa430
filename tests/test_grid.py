"""Grids, without disk: tables validated (bad grids are one clear sentence), --quick patches,
expansion into cells (iid ignores alpha, per-model settings, overrides) and cell names."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cllora.errors import UserError
from cllora.sweep import grid


def spec(axes: dict, run: dict | None = None, **tables) -> grid.GridSpec:
    return grid.parse_spec({"run": run or {}, "grid": axes, **tables}, "test grid", "t")


def names(cells):
    return [c.name for c in cells]


# ---------------------------------------------------------------- expansion

def test_iid_collapses_alpha_into_one_cell_per_seed():
    cells = grid.expand(spec({"scheme": ["length", "iid"], "alpha": [0.1, 1, 100], "seed": [0, 1]}))
    assert names(cells) == [
        "smollm2-135m/length-a0.1-s0", "smollm2-135m/length-a0.1-s1",
        "smollm2-135m/length-a1-s0", "smollm2-135m/length-a1-s1",
        "smollm2-135m/length-a100-s0", "smollm2-135m/length-a100-s1",
        "smollm2-135m/iid-s0", "smollm2-135m/iid-s1"]
    assert [c.config.alpha for c in cells[:6:2]] == [0.1, 1.0, 100.0]
    iid = cells[-1]
    assert iid.config.scheme == "iid" and "alpha" not in iid.axes and iid.config.seed == 1


def test_natural_clients_have_no_alpha_either():
    cells = grid.expand(spec({"scheme": ["natural", "length"], "alpha": [0.1, 1]},
                             run={"client_key": "president"}))
    assert names(cells) == ["smollm2-135m/natural-s0", "smollm2-135m/length-a0.1-s0",
                            "smollm2-135m/length-a1-s0"]


def test_per_model_settings_model_major_order_and_slugs():
    s = spec({"scheme": ["quantity"], "model": ["facebook/opt-125m", "smollm2-135m"], "alpha": [0.5]},
             run={"local_epochs": 2, "rounds": 4},
             per_model={"facebook/opt-125m": {"local_epochs": 5}, "unused-model": {"lr": 0.1}})
    cells = grid.expand(s)
    assert names(cells) == ["opt-125m/quantity-a0.5-s0", "smollm2-135m/quantity-a0.5-s0"]
    assert [c.config.local_epochs for c in cells] == [5, 2]
    assert all(c.config.rounds == 4 and c.config.lr == 5e-4 for c in cells)


def test_model_axis_comes_first_so_one_model_s_cells_are_contiguous():
    cells = grid.expand(spec({"seed": [0, 1], "model": ["m/a", "m/b"]}, run={"scheme": "iid"}))
    assert names(cells) == ["a/iid-s0", "a/iid-s1", "b/iid-s0", "b/iid-s1"]


def test_other_varying_axes_appear_in_names_and_values_are_typed():
    cells = grid.expand(spec({"lr": [1e-3, 5e-4], "local_epochs": [1]}, run={"scheme": "iid"}))
    assert names(cells) == ["smollm2-135m/iid-lr0.001-s0", "smollm2-135m/iid-lr0.0005-s0"]
    assert cells[0].config.local_epochs == 1
    cells = grid.expand(spec({"targets": [["q_proj"], ["q_proj", "v_proj"]], "optimizer": ["sgd", "adamw"]},
                             run={"scheme": "iid"}))
    assert names(cells) == ["smollm2-135m/iid-targetsq_proj-optimizersgd-s0",
                            "smollm2-135m/iid-targetsq_proj-optimizeradamw-s0",
                            "smollm2-135m/iid-targetsq_proj+v_proj-optimizersgd-s0",
                            "smollm2-135m/iid-targetsq_proj+v_proj-optimizeradamw-s0"]


def test_models_with_one_slug_get_distinct_directories():
    cells = grid.expand(spec({"model": ["/x/opt", "/y/opt"]}, run={"scheme": "iid"}))
    # sha1("/x/opt")[:6] names the first; the second keeps the plain slug
    assert names(cells) == ["opt-ab8cd3/iid-s0", "opt/iid-s0"]


@pytest.mark.parametrize("text, expected", [
    ("facebook/opt-125m", "opt-125m"), ("/models/my model/", "my_model"), ("..", "model"),
    ("HuggingFaceTB/SmolLM2-135M+x", "SmolLM2-135M+x")])
def test_model_slug(text, expected):
    assert grid.model_slug(text) == expected


def test_slug_keeps_safe_characters_and_is_never_empty():
    assert grid.slug("smollm2-135m, local_epochs=2") == "smollm2-135m_local_epochs_2"
    assert grid.slug("a/b c") == "a_b_c" and grid.slug("///") == "run" and grid.slug("", "x") == "x"


def test_quick_patch_and_overrides():
    data = {"sweep": {"name": "demo"}, "run": {"rounds": 10, "max_train_examples": 2000},
            "grid": {"scheme": ["length", "iid"], "alpha": [0.1, 1]},
            "per_model": {"smollm2-135m": {"local_epochs": 5}},
            "quick": {"run": {"rounds": 2}, "grid": {"alpha": [0.1]},
                      "per_model": {"smollm2-135m": {"local_epochs": 1}}}}
    full = grid.parse_spec(data, "demo.toml", "demo")
    quick = grid.parse_spec(data, "demo.toml", "demo", quick=True)
    assert full.name == "demo" and quick.name == "demo-quick" and quick.quick
    assert len(grid.expand(full)) == 3
    q = grid.expand(quick)
    assert names(q) == ["smollm2-135m/length-a0.1-s0", "smollm2-135m/iid-s0"]
    assert {(c.config.rounds, c.config.local_epochs, c.config.max_train_examples) for c in q} == {(2, 1, 2000)}
    # a command-line value of a grid key fixes that axis; --grid adds or replaces one
    fixed = grid.expand(full, overrides={"scheme": "length", "rounds": 3}, grid_overrides={"seed": [0, 1]})
    assert names(fixed) == ["smollm2-135m/length-a0.1-s0", "smollm2-135m/length-a0.1-s1",
                            "smollm2-135m/length-a1-s0", "smollm2-135m/length-a1-s1"]
    assert all(c.config.rounds == 3 for c in fixed)


def test_quick_patch_moves_a_key_between_run_and_grid():
    data = {"run": {"seed": 0}, "grid": {"alpha": [0.1, 1], "scheme": ["length"]},
            "quick": {"grid": {"seed": [4, 5]}, "run": {"alpha": 1.0}}}
    q = grid.parse_spec(data, "g", "g", quick=True)
    assert q.run == {"alpha": 1.0} and q.grid == {"scheme": ["length"], "seed": [4, 5]}


def test_parse_grid_flag_types_values():
    assert grid.parse_grid_flag("model=a,b") == ("model", ["a", "b"])
    assert grid.parse_grid_flag("alpha=0.1,1") == ("alpha", [0.1, 1])
    assert grid.parse_grid_flag("local-epochs=1,2") == ("local_epochs", [1, 2])
    assert grid.parse_grid_flag("eval_fp32=true,false") == ("eval_fp32", [True, False])
    with pytest.raises(UserError, match="--grid expects KEY=VALUE1,VALUE2"):
        grid.parse_grid_flag("seed")
    with pytest.raises(UserError, match="'sead' is not a run setting \\(did you mean 'seed'\\?\\)"):
        grid.parse_grid_flag("sead=1")


@pytest.mark.parametrize("data, message", [
    ({"grid": {"alfa": [0.1]}}, "[grid] key 'alfa' is not a run setting (did you mean 'alpha'?)"),
    ({"grid": {"alpha": 0.1}}, "[grid] alpha must be a non-empty list of values, e.g. alpha = [0.1]"),
    ({"grid": {"seed": []}}, "[grid] seed must be a non-empty list"),
    ({"grid": {"alpha": [0.1, -1], "scheme": ["length"]}}, "the cell with alpha=-1, scheme=length is not "
                                                          "a valid run: alpha must be a number > 0"),
    ({"run": {"alpha": 1}, "grid": {"alpha": [0.1]}}, "alpha is set in both [run] and [grid]"),
    ({"alpha": 0.1}, "unknown table or key 'alpha' (run settings go in [run]"),
    ({"runs": {}}, "unknown table or key 'runs' (did you mean 'run'?)"),
    ({"sweep": {"title": "x"}}, "unknown key(s) title in [sweep]"),
    ({"run": 3}, "run must be a table ([run]), got 3"),
    ({"grid": {"model": ["a"]}, "per_model": {"a": {"model": "b"}}}, "per-model settings may only set"),
    ({"per_model": {"a": 1}}, "[per_model] must hold one table per model"),
    ({"run": {"clients": 2}, "grid": {"clients_per_round": [1, 3]}}, "clients_per_round must be <= clients"),
    ({"run": {"engine": "flower"}}, "the cell with the fixed settings is not a valid run: engine must be one of"),
])
def test_bad_grids_are_one_clear_sentence(data, message):
    with pytest.raises(UserError) as info:
        grid.expand(grid.parse_spec(data, "g.toml", "g"))
    assert message in str(info.value)


def test_quick_without_a_quick_table_says_so():
    with pytest.raises(UserError, match="g.toml has no \\[quick\\] table"):
        grid.parse_spec({"grid": {"seed": [0]}}, "g.toml", "g", quick=True)


def test_grid_needs_no_model_code_and_no_run_records():
    code = ("import sys, cllora.sweep.grid as g; "
            "g.expand(g.parse_spec({'grid': {'seed': [0, 1]}})); "
            "bad = [m for m in ('transformers', 'peft', 'cllora.records', 'cllora.model') if m in sys.modules]; "
            "sys.exit(', '.join(bad) or None)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_budget_study_applies_the_study_patch_and_names_the_sweep():
    data = {"sweep": {"name": "demo"}, "run": {"rounds": 10, "lr": 5e-4, "max_train_examples": 2000},
            "grid": {"seed": [0]}, "quick": {"run": {"rounds": 6}},
            "study": {"run": {"max_train_examples": 400, "lr": 3e-3}}}
    study = grid.parse_spec(data, "demo.toml", "demo", budget="study")
    assert study.name == "demo-study" and study.budget == "study" and not study.quick
    cfg = grid.expand(study)[0].config
    assert (cfg.rounds, cfg.lr, cfg.max_train_examples) == (10, 3e-3, 400)  # rounds are never shrunk
    assert grid.parse_spec(data, "demo.toml", "demo").budget == "full"
    assert grid.budgets_of(data) == ["full", "quick", "study"]
    with pytest.raises(UserError, match=r"g.toml has no \[study\] table, so --budget study .* offers --budget full"):
        grid.parse_spec({"grid": {"seed": [0]}}, "g.toml", "g", budget="study")
    with pytest.raises(UserError, match="--budget must be one of full, quick, study, got 'huge'"):
        grid.parse_spec(data, "g.toml", "g", budget="huge")


def test_study_budget_presets_keep_the_full_rounds_epochs_and_clients():
    """The study budget shrinks texts per client only: rounds, local epochs and clients are the full
    preset's, and a round moves the adapters about as far (lr x steps a round within 25 %)."""
    import math

    from cllora.sweep import run as sweep

    for name in ("study-length", "study-quantity", "study-local", "study-size"):
        full = {c.name: c.config for c in grid.expand(sweep.load_spec(preset=name))}
        study = {c.name: c.config for c in grid.expand(sweep.load_spec(preset=name, budget="study"))}
        assert full.keys() == study.keys()
        for cell, f in full.items():
            s = study[cell]
            assert (s.rounds, s.local_epochs, s.clients, s.clients_per_round) == \
                (f.rounds, f.local_epochs, f.clients, f.clients_per_round), (name, cell)
            assert s.max_train_examples < f.max_train_examples

            def move(c):
                texts = c.max_train_examples * (1 - c.local_test_fraction) / c.clients
                return c.lr * math.ceil(texts / c.batch_size) * c.local_epochs
            assert move(s) == pytest.approx(move(f), rel=0.25), (name, cell)
