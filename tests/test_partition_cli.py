"""`cllora partition`: one-line errors with exit code 2, the Dirichlet demo, a real run on a local corpus."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cllora.cli import main
from wording import as_keys

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv,match", [
    (["--alpha", "-1"], "alpha must be a number > 0, got -1.0"),
    (["--clients", "0"], "clients must be an integer >= 1, got 0"),
    (["--clients", "2", "--clients-per-round", "3"], "clients_per_round must be <= clients (2), got 3"),
    (["--edges", "1,x,3,4"], "--class-edges must be comma-separated numbers, got '1,x,3,4'"),
    (["--num-classes", "3", "--edges", "5,2"], "class_edges must be strictly increasing, got [5.0, 2.0]"),
    (["--num-classes", "3", "--class-edges", "1,2,3"], "class_edges must hold num_classes - 1 = 2 values"),
    (["--num-classes", "1"], "num_classes must be an integer >= 2, got 1"),
    (["--max-rows", "-1"], "--max-rows must be >= 0, got -1"),
    (["--dirichlet-demo", "--demo-samples", "0"], "--demo-samples must be >= 1, got 0"),
])
def test_bad_input_is_one_line_and_exit_2(argv, match, capsys):
    assert main(["partition", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cllora: error: ") and (match in err or match in as_keys(err))
    assert err.count("\n") == 1


def test_unknown_scheme_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["partition", "--scheme", "dirichlet"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_dirichlet_demo_writes_png(tmp_path, capsys):
    path = tmp_path / "fig3.png"
    assert main(["partition", "--dirichlet-demo", "--plot", str(path), "--seed", "1"]) == 0
    assert path.read_bytes()[:8] == PNG_MAGIC
    out = capsys.readouterr().out
    assert "mean largest share" in out and "wrote" in out


@pytest.fixture
def corpus(tmp_path):
    """A local .txt corpus: 120 texts of 1-40 words, one per blank-line-separated block."""
    rng = np.random.default_rng(0)
    words = "the union is strong and the people are free to speak".split()
    texts = [" ".join(rng.choice(words, size=int(rng.integers(1, 41)))) + "." for _ in range(120)]
    path = tmp_path / "corpus.txt"
    path.write_text("\n\n".join(texts))
    return str(path)


@pytest.mark.parametrize("scheme", ["length", "quantity"])
def test_real_run_writes_json_and_plot(tiny_model, corpus, tmp_path, scheme, capsys):
    out_json, out_png = tmp_path / "part.json", tmp_path / "part.png"
    argv = ["partition", "--dataset", corpus, "--model", tiny_model, "--scheme", scheme, "--alpha", "0.1",
            "--clients", "6", "--clients-per-round", "2", "--seed", "3", "--json", str(out_json),
            "--plot", str(out_png), "--max-rows", "4"]
    assert main(argv) == 0
    shown = capsys.readouterr().out
    assert "Length classes" in shown and "2 more" in shown and "Gini of client sizes" in shown
    assert out_png.read_bytes()[:8] == PNG_MAGIC
    part = json.loads(out_json.read_text())
    assert part["scheme"] == scheme and part["alpha"] == 0.1 and part["seed"] == 3
    assert part["num_clients"] == 6 and part["num_classes"] == 5 and len(part["class_edges"]) == 4
    assert part["length_measure"] == "tokens" and isinstance(part["notes"], list)
    rows = [i for c in part["clients"] for i in c["indices"]]
    assert len(rows) == len(set(rows))
    n = part["stats"]["num_examples"]
    assert n == 108  # 120 texts, 10 % held out as the global test set
    sizes = [c["size"] for c in part["clients"]]
    assert sizes == [n // 6] * 6 if scheme == "length" else sum(sizes) == n
    for c in part["clients"]:
        assert sum(c["class_counts"]) == c["size"] and len(c["class_counts"]) == 5
    again = tmp_path / "again.json"
    assert main(argv[:-6] + ["--json", str(again)]) == 0
    assert json.loads(again.read_text())["clients"] == part["clients"]


def test_sentence_measure_and_fixed_edges(tiny_model, corpus, tmp_path):
    out_json = tmp_path / "part.json"
    assert main(["partition", "--dataset", corpus, "--model", tiny_model, "--length-measure", "sentences",
                 "--num-classes", "2", "--edges", "1", "--clients", "3", "--json", str(out_json)]) == 0
    part = json.loads(out_json.read_text())
    assert part["class_edges"] == [1.0] and part["length_measure"] == "sentences"
    assert part["stats"]["class_sizes"] == [108, 0]  # every text is one sentence
    assert part["alpha"] is None  # iid by default


def test_more_clients_than_texts_is_a_user_error(tiny_model, corpus, capsys):
    assert main(["partition", "--dataset", corpus, "--model", tiny_model, "--clients", "500",
                 "--clients-per-round", "2"]) == 2
    assert "clients (500) is more than the 108 training texts" in capsys.readouterr().err
