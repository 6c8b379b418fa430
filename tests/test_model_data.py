"""Models (cost table, LoRA, adapter state, embedded default) and corpora (embedded, local, split)."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest
import torch

from cllora.cli import main
from cllora.data import load_corpus, sotu_texts, tokenize_texts
from cllora.errors import UserError
from cllora.model import (
    BUNDLED_CONFIGS,
    attach_lora,
    cost_row,
    get_adapter_state,
    load_model,
    load_tokenizer,
    lora_parameters,
    set_adapter_state,
)

STUDY_TABLE = {"opt-125m": (73_728, 125_313_024), "opt-350m": (196_608, 331_393_024),
               "opt-1.3b": (393_216, 1_316_151_296)}


@pytest.mark.parametrize("name", list(STUDY_TABLE))
def test_cost_table_reproduces_the_study_from_a_config_only_directory(name, tmp_path):
    folder = tmp_path / name
    folder.mkdir()
    shutil.copy(BUNDLED_CONFIGS[f"facebook/{name}"] / "config.json", folder / "config.json")
    row = cost_row(str(folder), rank=2, targets=("q_proj", "v_proj"))
    assert (row["trainable_params"], row["total_params"]) == STUDY_TABLE[name]
    assert row["bytes_per_transfer"] == 4 * STUDY_TABLE[name][0]


def test_params_cli_json_and_table(capsys):
    assert main(["params", "facebook/opt-125m", "facebook/opt-1.3b", "--rank", "2", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in rows] == ["facebook/opt-125m", "facebook/opt-1.3b"]
    for r in rows:
        assert {"model", "trainable_params", "total_params", "ratio", "bytes_per_transfer"} <= set(r)
    assert rows[0]["ratio"] == pytest.approx(73_728 / 125_313_024)
    assert main(["params", "facebook/opt-350m"]) == 0
    assert "196,608" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["params", "no-such-org/no-such-model"], "is not an embedded model"),
    (["params", "/nonexistent/model/dir"], "does not exist"),
    (["params", "facebook/opt-125m", "--rank", "0"], "--rank must be an integer >= 1, got 0"),
    (["params", "facebook/opt-125m", "--targets", "query"], "match no layer"),
])
def test_params_bad_input_exits_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_directory_without_config_is_refused(tmp_path, capsys):
    assert main(["params", str(tmp_path)]) == 2
    assert "has no config.json" in capsys.readouterr().err


def test_lora_state_round_trip_only_moves_lora_tensors(tiny_model):
    model = attach_lora(load_model(tiny_model), rank=4, alpha=8, targets=("q_proj", "v_proj"))
    state = get_adapter_state(model)
    expected = {f"base_model.model.model.decoder.layers.{layer}.self_attn.{proj}.lora_{ab}.default.weight"
                for layer in (0, 1) for proj in ("q_proj", "v_proj") for ab in "AB"}
    assert set(state) == expected  # exactly the 8 LoRA matrices: no base weight, none missing
    assert {tuple(t.shape) for k, t in state.items() if "lora_A" in k} == {(4, 64)}
    assert {tuple(t.shape) for k, t in state.items() if "lora_B" in k} == {(64, 4)}
    assert sum(t.numel() for t in state.values()) == 2 * 2 * 4 * (64 + 64)  # 2 layers, q and v
    zeros = {k: torch.zeros_like(v) for k, v in state.items()}
    set_adapter_state(model, zeros)
    assert all(float(p.detach().abs().sum()) == 0 for p in lora_parameters(model).values())
    with pytest.raises(ValueError, match="does not match"):
        set_adapter_state(model, {"x": torch.zeros(1)})
    with pytest.raises(UserError, match="rank must be an integer >= 1"):
        attach_lora(load_model(tiny_model), rank=0)


def test_embedded_corpus_shape():
    texts = sotu_texts()
    words = np.array([len(t.split()) for t in texts])
    assert 22_000 < len(texts) < 26_000 and words.min() >= 5 and 55 <= np.median(words) <= 75
    chunks = sotu_texts(chunked=True)
    assert 3_500 < len(chunks) < 4_500 and np.median([len(t.split()) for t in chunks]) > 150


def test_split_is_seeded_disjoint_and_subsampled():
    a = load_corpus("sotu", seed=1, max_train_examples=500, max_test_examples=50)
    b = load_corpus("sotu", seed=1, max_train_examples=500, max_test_examples=50)
    c = load_corpus("sotu", seed=2, max_train_examples=500, max_test_examples=50)
    assert a == b and a.train != c.train
    assert (len(a.train), len(a.test)) == (500, 50) and not set(a.train) & set(a.test)


def test_local_files_of_every_kind(tmp_path):
    import pandas as pd

    (tmp_path / "blocks.txt").write_text("first text\nstill first\n\n  \n\nsecond text\n\nthird\n")
    (tmp_path / "lines.txt").write_text("one\ntwo\n\nthree\n".replace("\n\n", "\n"))
    rows = [{"review": f"text number {i}", "id": i} for i in range(10)] + [{"review": "  ", "id": 99}]
    with open(tmp_path / "d.jsonl", "w") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    pd.DataFrame(rows).to_csv(tmp_path / "d.csv", index=False)
    pd.DataFrame(rows).to_parquet(tmp_path / "d.parquet")
    blocks = load_corpus(str(tmp_path / "blocks.txt"), test_fraction=0.34)
    assert sorted(blocks.train + blocks.test) == ["first text\nstill first", "second text", "third"]
    assert len(load_corpus(str(tmp_path / "lines.txt"), test_fraction=0.34).train) == 2
    for name in ("d.jsonl", "d.csv", "d.parquet"):
        corpus = load_corpus(str(tmp_path / name), text_column="review")
        assert len(corpus.train) + len(corpus.test) == 10 and corpus.dropped_empty == 1
    with pytest.raises(UserError, match="text column 'body' is not in .*review, id"):
        load_corpus(str(tmp_path / "d.jsonl"), text_column="body")
    with pytest.raises(UserError, match="has no 'text' column; pass --text-column"):
        load_corpus(str(tmp_path / "d.csv"))


def test_bad_corpora(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_corpus(str(tmp_path / "missing.jsonl"))
    (tmp_path / "one.txt").write_text("only one text\n")
    with pytest.raises(UserError, match="has 1 non-empty text"):
        load_corpus(str(tmp_path / "one.txt"))
    (tmp_path / "x.docx").write_text("?")
    with pytest.raises(UserError, match="unsupported type"):
        load_corpus(str(tmp_path / "x.docx"))
    with pytest.raises(UserError, match="could not be loaded from the Hugging Face hub"):
        load_corpus("someone/not-a-local-dataset")


def test_tokenized_texts_are_full_and_cached(tiny_model):
    tokenizer = load_tokenizer(tiny_model)
    texts = ["a short one", "a much longer text " * 50]
    first = tokenize_texts(texts, tokenizer)
    assert len(first[1]) > 200  # no truncation: the length classes see every token
    again = tokenize_texts(texts, tokenizer)  # from the cache
    assert [x.tolist() for x in again] == [x.tolist() for x in first]


@pytest.mark.slow
def test_embedded_default_model_is_real_and_cached():
    load_model("smollm2-135m")  # converts from GGUF on a fresh machine
    start = time.perf_counter()
    model = load_model("smollm2-135m")
    assert time.perf_counter() - start < 10  # the cached safetensors copy, not the GGUF again
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    tokenizer = load_tokenizer("smollm2-135m")
    batch = tokenizer(["The Congress of the United States shall assemble at least once in every year."],
                      return_tensors="pt")
    with torch.no_grad():
        loss = model(**batch, labels=batch["input_ids"]).loss
    assert float(loss) < 6.0  # a pretrained model: ~4.1 here; random weights give ~10.8


def test_token_cache_tells_tokenizers_apart_by_bos_handling(tiny_model):
    """Same vocabulary, one adds a BOS token: they must not share a token-cache entry."""
    from transformers import AutoTokenizer

    from cllora.data import tokenizer_fingerprint

    plain = AutoTokenizer.from_pretrained(tiny_model)
    with_bos = AutoTokenizer.from_pretrained(tiny_model, add_bos_token=True)
    texts = ["The state of the union is strong.", "Peace and prosperity."]
    no_bos = tokenize_texts(texts, plain)  # fills the cache first
    bos = tokenize_texts(texts, with_bos)
    assert [len(x) for x in bos] == [len(x) + 1 for x in no_bos]
    assert all(x[0] == with_bos.bos_token_id for x in bos)
    assert tokenizer_fingerprint(plain) != tokenizer_fingerprint(with_bos)
    assert tokenizer_fingerprint(plain) == tokenizer_fingerprint(AutoTokenizer.from_pretrained(tiny_model))
