"""Command-line flags generated from RunConfig's field metadata, shared by every command.

Each RunConfig field is one kebab-case flag with the field's help text, choices and metavar
(`cllora.config.settings._setting`; a strategy option's from its declaration on the strategy, through
`cllora.config.options`) and the default shown in brackets. Flags default to None, so a value
from `--config FILE.toml` is only overridden by a flag the user actually gave.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Iterable

from cllora.config.settings import RunConfig, parse_class_edges


def _flag_type(field_type: str):
    if "bool" in field_type:
        return None
    if "float" in field_type and "tuple" not in field_type:
        return float
    if "int" in field_type and "tuple" not in field_type:
        return int
    return str


def _shown_default(value) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def config_fields(names: Iterable[str] | None = None) -> list:
    """The RunConfig fields to expose as flags (all of them by default), in declaration order."""
    chosen = None if names is None else set(names)
    return [f for f in fields(RunConfig) if chosen is None or f.name in chosen]


def add_config_flags(parser: argparse.ArgumentParser, names: Iterable[str] | None = None,
                     title: str = "experiment (override the config file; defaults in brackets)",
                     aliases: dict[str, str] | None = None) -> None:
    """Add one flag per RunConfig field (or per field in `names`) to a parser group; `aliases`
    gives a field a second, shorter flag (e.g. {"class_edges": "--edges"})."""
    group = parser.add_argument_group(title)
    for f in config_fields(names):
        meta = f.metadata
        flag = ["--" + f.name.replace("_", "-")] + ([aliases[f.name]] if f.name in (aliases or {}) else [])
        text = f"{meta.get('help', '')} [{_shown_default(f.default)}]"
        typ = _flag_type(str(f.type))
        if typ is None:  # a switch
            group.add_argument(*flag, action="store_true", default=None, dest=f.name, help=text)
            continue
        kwargs = dict(type=typ, default=None, dest=f.name, help=text)
        choices = meta.get("choices")
        if callable(choices):
            choices = choices()
        if choices:
            kwargs.update(choices=choices, metavar="{" + ",".join(choices) + "}")
        else:
            kwargs["metavar"] = meta.get("metavar") or {int: "N", float: "X"}.get(typ, "VALUE")
        group.add_argument(*flag, **kwargs)


def config_overrides(args: argparse.Namespace, names: Iterable[str] | None = None) -> dict:
    """The config values the user gave as flags (None = not given), parsed into config types."""
    values = {f.name: getattr(args, f.name, None) for f in config_fields(names)}
    if values.get("class_edges") is not None:
        values["class_edges"] = parse_class_edges(values["class_edges"], "--class-edges")
    return {k: v for k, v in values.items() if v is not None}
