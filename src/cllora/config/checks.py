"""The type of every run setting, read from RunConfig's annotations: a value from TOML, JSON or the
command line is checked against it (and brought into the field's form: int → float, list → tuple,
comma-separated text → tuple), so a wrong type is one sentence naming the setting and what it takes;
and the bound checks RunConfig makes of single values (same style of sentence)."""

from __future__ import annotations

import math
from typing import Any

from cllora.errors import UserError

_WORDS = {"bool": "true or false", "int": "an integer", "float": "a number", "str": "text (in quotes)",
          "None": "left out", "tuple[str, ...]": "a list of names or comma-separated text",
          "tuple[float, ...]": "a list of numbers or comma-separated numbers"}


def annotation_kinds(annotation: Any) -> tuple[str, ...]:
    """The alternatives of a field annotation: "int | None" → ("int", "None")."""
    return tuple(part.strip() for part in str(annotation).split("|"))


def checked_value(name: str, value: Any, annotation: Any) -> Any:
    """`value` in the form of the field `name` annotated `annotation`; a UserError for a wrong type."""
    kinds = annotation_kinds(annotation)
    for kind in kinds:
        ok, converted = _as_kind(value, kind)
        if ok:
            return converted
    allowed = " or ".join(_WORDS.get(kind, kind) for kind in kinds)
    raise UserError(f"{name} must be {allowed}, got {value!r}")


def _as_kind(value: Any, kind: str) -> tuple[bool, Any]:
    """(True, value in this kind's form) where `value` is of the kind, else (False, None)."""
    if kind == "None":
        return value is None, None
    if kind == "bool" or isinstance(value, bool):  # a bool is no number, and only a bool is a bool
        return (kind == "bool" and isinstance(value, bool)), value
    if kind == "int":
        return isinstance(value, int), value
    if kind == "float":
        return isinstance(value, (int, float)), float(value) if isinstance(value, (int, float)) else None
    if kind == "str":
        return isinstance(value, str), value
    if kind.startswith("tuple["):
        return _as_tuple(value, kind[len("tuple["):].split(",")[0].strip())
    return True, value  # an annotation this module does not know: left to the field's own check


def _as_tuple(value: Any, item: str) -> tuple[bool, Any]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
        if item == "float":
            try:
                value = [float(v) for v in value]
            except ValueError:
                return False, None
    if not isinstance(value, (list, tuple)):
        return False, None
    items = [_as_kind(v, item) for v in value]
    return (all(ok for ok, _ in items), tuple(v for _, v in items))


def check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UserError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def check_at_least_zero(name: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
            or value < 0:
        raise UserError(f"{name} must be a number >= 0, got {value!r}")


def check_positive(name: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
            or value <= 0:
        raise UserError(f"{name} must be a number > 0, got {value!r}")


def check_at_least(name: str, value: Any, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise UserError(f"{name} must be an integer >= {low}, got {value!r}")


def check_number(name: str, value: Any, low: float, *, low_open: bool = False,
                 below: float | None = None) -> None:
    """A finite number >= low (> low with `low_open`) and, with `below`, < below."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
            or value < low or (low_open and value == low):
        raise UserError(f"{name} must be a number {'>' if low_open else '>='} {low:g}, got {value!r}")
    if below is not None and not value < below:
        raise UserError(f"{name} must be in {'(' if low_open else '['}{low:g}, {below:g}), got {value!r}")
