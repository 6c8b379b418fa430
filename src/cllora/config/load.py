"""Reading settings: a TOML file into a RunConfig, with unknown keys and bad values named, and
settings refused where the run would ignore them."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from cllora.config.settings import APPLIES_ONLY_WITH, RunConfig, from_dict
from cllora.errors import UserError


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file into a dict: the one config reader. A missing file, a file that is not UTF-8
    (the byte offset named), one that starts with a byte-order mark, and malformed TOML are each one
    sentence naming the file."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise UserError(f"config file {str(path)!r} {what}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"config file {str(path)!r} cannot be read ({exc.strerror or exc})") from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raise UserError(f"config file {str(path)!r} starts with a byte-order mark (BOM), which TOML does "
                        "not allow; save it as UTF-8 without BOM")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise UserError(f"config file {str(path)!r} is not UTF-8: byte {exc.start} (line {line}) is "
                        f"0x{raw[exc.start]:02x}; TOML files must be UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"config file {str(path)!r} is not valid TOML: {exc}") from None


def file_settings(path: str | Path) -> dict[str, Any]:
    """The run settings of a TOML file: its [run] table, or its top level, never both: a file with
    settings at the top level *and* a [run] table is refused (the top-level ones would otherwise be
    dropped without a word, or silently override the table)."""
    data = load_toml(path)
    if "run" not in data:
        return data
    if not isinstance(data["run"], dict):
        raise UserError(f"config file {str(path)!r}: run must be a [run] table, got {data['run']!r}")
    outside = [k for k in data if k != "run"]
    if outside:
        raise UserError(f"config file {str(path)!r} has settings both at the top level ({', '.join(outside)}) "
                        "and in a [run] table; put them all in [run] (or all at the top level)")
    return data["run"]


def load_config(path: str | Path | None = None, **overrides: Any) -> RunConfig:
    """Defaults, then the TOML file's [run] table (or top level), then non-None overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        values.update(file_settings(path))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return from_dict(values)


def check_given(config: RunConfig, given) -> None:
    """Refuse a setting the user gave for one run (a flag or the config file) that the run would
    ignore (APPLIES_ONLY_WITH), as strategy options are refused for a strategy that ignores them."""
    for name in given:
        if name in APPLIES_ONLY_WITH:
            other, values = APPLIES_ONLY_WITH[name]
            values = values() if callable(values) else values
            if getattr(config, other) not in values:
                raise UserError(f"{name} ({getattr(config, name)!r}) is only used with {other} "
                                f"{'/'.join(values)}, not with {other} {getattr(config, other)!r}; "
                                f"leave it out")
