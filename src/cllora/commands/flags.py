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


def flag_of(name: str) -> str:
    """The command-line flag of a run setting: dp_clip → --dp-clip (the one key → flag rule)."""
    return "--" + name.replace("_", "-")


# a one-word setting name (model, seed, clients, ...) is also an ordinary word: it is taken for the
# setting only where an error names a setting: at the start, or before "must", "=", "(", a quote, ...
_NAMED_AFTER = r"(?=\s(?:must|=|\(|'|\"|needs|is only|only)|$|:)"


def spoken(message: str, args: argparse.Namespace) -> str:
    """An error message with each setting the user gave named as they gave it: `--dp-clip` for a flag,
    `dp_clip (in exp.toml)` for a key of the --config file; other names are left as they are."""
    import re

    typed = {f.name for f in fields(RunConfig) if getattr(args, f.name, None) is not None}
    in_file = set(_file_keys(getattr(args, "config", None))) - typed
    for name in sorted(typed | in_file, key=len, reverse=True):
        label = flag_of(name) if name in typed else f"{name} (in {args.config})"
        if label in message or (name in in_file and str(args.config) in message):
            continue
        if "_" in name:  # dp_clip: an identifier, wherever it stands alone
            pattern = rf"(?<![\w\-'\"./(]){re.escape(name)}(?![\w'\"-])"
        else:  # model: only where a setting is named
            pattern = rf"(?:^|(?<=\s)){re.escape(name)}{_NAMED_AFTER}"
        message = re.sub(pattern, lambda _: label, message, count=0 if name in typed else 1)
    return message


def _file_keys(path) -> list[str]:
    """The settings a --config file gives (none where it cannot be read: its own error says why)."""
    if not path:
        return []
    from cllora.config.load import file_settings  # lazy: read only to word an error
    from cllora.errors import UserError

    try:
        return list(file_settings(path))
    except (UserError, OSError):
        return []
