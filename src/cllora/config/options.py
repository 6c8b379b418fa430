"""The strategies' options as run settings, generated from their declarations (`Option` records on
each `Strategy`, cllora.aggregate): a RunConfig field per option, placed after `strategy`, with the
declared default, help and metavar (so `cllora.commands.flags` makes its flag), and the bound checks
of their values. The registry is read once, when RunConfig is built (on importing cllora.config).
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

from cllora.aggregate import Option, declared_options
from cllora.config.checks import check_number


def option_field(option: Option) -> Any:
    """The RunConfig field of an option, with the metadata every field carries (help, choices,
    metavar: cllora.config.settings._setting)."""
    return field(default=option.default, metadata={"help": option.help, "choices": None,
                                                   "metavar": option.metavar})


def with_strategy_options(after: str):
    """A class decorator, applied before @dataclass: insert one field per declared strategy option
    after the field `after`, in registry order."""

    def insert(cls):
        annotations = {}
        for name, kind in cls.__annotations__.items():
            annotations[name] = kind
            if name == after:
                for option in declared_options().values():
                    annotations[option.name] = option.annotation
                    setattr(cls, option.name, option_field(option))
        cls.__annotations__ = annotations
        return cls

    return insert


def check_option_bounds(values: Any) -> None:
    """Every declared option's value (an attribute of `values`) within its declared bounds (None
    passes where the declaration's default is None: the strategy fills it)."""
    for option in declared_options().values():
        value = getattr(values, option.name)
        if value is None and option.default is None:
            continue
        check_number(option.name, value, option.low, low_open=option.low_open, below=option.below)
