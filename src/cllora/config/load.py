"""Reading settings: a TOML file into a RunConfig, with unknown keys and bad values named, and
settings refused where the run would ignore them."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from cllora.config.settings import APPLIES_ONLY_WITH, RunConfig, from_dict
from cllora.errors import UserError


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file into a dict, with a clear error for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {str(path)!r} does not exist")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"config file {str(path)!r} is not valid TOML: {exc}") from None


def file_settings(path: str | Path) -> dict[str, Any]:
    """The run settings of a TOML file: its [run] table, or its top level."""
    data = load_toml(path)
    return data.get("run", data)


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
