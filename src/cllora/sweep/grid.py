"""Grids: a grid file's tables (as a dict) validated into a GridSpec and expanded into named cells.

Pure: no file reading, no model code (reading a grid file or a built-in preset is `cllora.sweep.run`'s).
A grid holds
  [sweep]              optional name and description
  [run]                fixed settings (any RunConfig key)
  [grid]               lists of values; the cells are their cartesian product. `scheme = "iid"`
                       ignores alpha, so iid makes one cell, not one per alpha
  [per_model.<model>]  settings for one model only (the study trains smaller models longer)
  [quick], [study]     patches of the same shape ([quick.run], [study.per_model.<model>], ...) applied
                       by --budget quick (--quick) or --budget study: the training budgets of BUDGETS
Precedence, lowest first: RunConfig defaults, [run], [per_model.<model>], the cell's grid values,
command-line overrides (a command-line value of a grid key replaces that axis).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from cllora.config.settings import FIELD_NAMES, RunConfig, check_keys, did_you_mean, from_dict
from cllora.errors import UserError
from cllora.files import UNSAFE, slug  # noqa: F401  (slug: also this module's, for its callers)
from cllora.partition.registry import uses_alpha

BUDGETS = ("full", "quick", "study")  # "full": the grid as written; the others: its patch table of that name
PATCHES = BUDGETS[1:]
TABLES = ("sweep", "run", "grid", "per_model", *PATCHES)
SWEEP_KEYS = ("name", "description")
# short tags of grid axes in cell names; other keys appear kebab-cased
AXIS_TAGS = {"alpha": "a", "seed": "s", "local_epochs": "e", "lr": "lr", "rank": "r",
             "clients": "n", "clients_per_round": "k", "rounds": "rounds", "batch_size": "b",
             "max_length": "len", "strategy": ""}  # "" : the value alone (fedavg, scaffold, ...)


@dataclass(frozen=True)
class GridSpec:
    """A parsed, validated grid file (after its budget's patch, if any)."""

    name: str
    description: str
    run: dict[str, Any]
    grid: dict[str, list]
    per_model: dict[str, dict[str, Any]]
    source: str
    budget: str = "full"

    @property
    def quick(self) -> bool:
        return self.budget == "quick"


@dataclass(frozen=True)
class Cell:
    """One run of the sweep: its directory name under the sweep root and its full config."""

    name: str
    config: RunConfig
    axes: dict[str, Any] = field(default_factory=dict)  # the grid values that define this cell


# ---------------------------------------------------------------- parsing and validating

def parse_spec(data: dict, where: str = "grid file", default_name: str = "sweep",
               quick: bool = False, budget: str | None = None) -> GridSpec:
    """Validate the tables of a grid file (a dict, as read from TOML) and build a GridSpec at a
    training budget of BUDGETS (`quick` is budget "quick")."""
    budget = budget or ("quick" if quick else "full")
    if budget not in BUDGETS:
        raise UserError(f"--budget must be one of {', '.join(BUDGETS)}, got {budget!r}")
    _check_tables(data, where)
    if budget != "full":
        data = _budget_variant(data, where, budget)
    sweep = _table(data, "sweep", where)
    unknown = sorted(set(sweep) - set(SWEEP_KEYS))
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)} in [sweep]; allowed: "
                        f"{', '.join(SWEEP_KEYS)}")
    run = _table(data, "run", where)
    _check_keys(run, "[run]", where)
    grid = _parse_grid(_table(data, "grid", where), where)
    both = sorted(set(run) & set(grid))
    if both:
        raise UserError(f"{where}: {', '.join(both)} is set in both [run] and [grid]; keep it in one")
    per_model = _parse_per_model(_table(data, "per_model", where), grid, where)
    name = str(sweep.get("name", default_name)) + ("" if budget == "full" else f"-{budget}")
    return GridSpec(name, str(sweep.get("description", "")).strip(), dict(run), grid, per_model,
                    where, budget)


def budgets_of(data: dict) -> list[str]:
    """The budgets a grid file offers: always "full", and each patch table it has."""
    return ["full"] + [b for b in PATCHES if isinstance(data.get(b), dict) and data[b]]


def _budget_variant(data: dict, where: str, budget: str) -> dict:
    patch = data.get(budget)
    if not patch:
        flag = "--quick" if budget == "quick" else f"--budget {budget}"
        raise UserError(f"{where} has no [{budget}] table, so {flag} has nothing to change; it offers "
                        f"--budget {', '.join(budgets_of(data))}")
    _check_tables(patch, f"{where} [{budget}]", allow_patches=False)
    return _apply_patch(data, patch)


def _parse_grid(grid: dict, where: str) -> dict[str, list]:
    _check_keys(grid, "[grid]", where)
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise UserError(f"{where}: [grid] {key} must be a non-empty list of values, e.g. "
                            f"{key} = [{_toml_value(values)}]; got {_toml_value(values)}")
    return {k: list(v) for k, v in grid.items()}


def _parse_per_model(per_model: dict, grid: dict, where: str) -> dict[str, dict[str, Any]]:
    for model, settings in per_model.items():
        if not isinstance(settings, dict):
            raise UserError(f"{where}: [per_model] must hold one table per model, e.g. "
                            f"[per_model.\"{model}\"]; got {model} = {_toml_value(settings)}")
        _check_keys(settings, f"[per_model.\"{model}\"]", where)
        clash = sorted(set(settings) & ({"model"} | set(grid)))
        if clash:
            raise UserError(f"{where}: [per_model.\"{model}\"] sets {', '.join(clash)}, which is a grid "
                            "axis (or the model itself); per-model settings may only set fixed keys")
    return {m: dict(s) for m, s in per_model.items()}


def _check_tables(data: dict, where: str, allow_patches: bool = True) -> None:
    allowed = TABLES if allow_patches else tuple(t for t in TABLES if t not in PATCHES)
    unknown = [k for k in data if k not in allowed]
    if unknown:
        k = unknown[0]
        hint = did_you_mean(k, allowed)
        if k in FIELD_NAMES:
            hint = " (run settings go in [run], lists of values in [grid])"
        raise UserError(f"{where}: unknown table or key {k!r}{hint}; allowed tables: "
                        + ", ".join(f"[{t}]" for t in allowed))


def _table(data: dict, name: str, where: str) -> dict:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise UserError(f"{where}: {name} must be a table ([{name}]), got {_toml_value(value)}")
    return value


def _check_keys(table: dict, label: str, where: str) -> None:
    check_keys(table, f"{where}: {label}")


def _apply_patch(data: dict, patch: dict) -> dict:
    """Tables of the patch update the file's tables (per_model one model at a time); a key the
    patch moves between [run] and [grid] leaves the other table."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items() if k not in PATCHES}
    for table, values in patch.items():
        if table == "per_model":
            merged = {m: dict(s) for m, s in out.get("per_model", {}).items()}
            for model, settings in values.items():
                merged.setdefault(model, {}).update(settings if isinstance(settings, dict) else {})
            out["per_model"] = merged
            continue
        out[table] = {**out.get(table, {}), **values}
        other = {"grid": "run", "run": "grid"}.get(table)
        if other:
            out[other] = {k: v for k, v in out.get(other, {}).items() if k not in values}
    return out


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)


def parse_grid_flag(text: str) -> tuple[str, list]:
    """`--grid KEY=V1,V2`: values read as TOML scalars where they parse (numbers, true/false)."""
    key, sep, raw = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key or not raw.strip():
        raise UserError(f"--grid expects KEY=VALUE1,VALUE2 (e.g. --grid seed=0,1,2), got {text!r}")
    if key not in FIELD_NAMES:
        raise UserError(f"--grid {text!r}: {key!r} is not a run setting{did_you_mean(key, FIELD_NAMES)}")
    return key, [_scalar(v.strip()) for v in raw.split(",") if v.strip()]


def _scalar(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


# ---------------------------------------------------------------- expanding into cells

def expand(spec: GridSpec, overrides: dict[str, Any] | None = None,
           grid_overrides: dict[str, list] | None = None) -> list[Cell]:
    """The cells of a grid, model-major, in the order the values are listed; iid ignores alpha.

    `overrides` fix keys (a grid key given here stops being an axis); `grid_overrides` replace or
    add axes. Every cell's config is validated; a bad value is named with the cell it makes.
    """
    overrides = dict(overrides or {})
    grid = _axes(spec.grid, overrides, grid_overrides or {})
    run = {k: v for k, v in spec.run.items() if k not in grid}
    cells: dict[str, Cell] = {}
    for values in itertools.product(*grid.values()):
        cell = _cell(spec, run, dict(zip(grid, values)), overrides)
        cells.setdefault(json.dumps(cell.config.to_dict(), sort_keys=True), cell)
    named = _name_cells(list(cells.values()), grid)
    _check_unique_names(named)
    return named


def _axes(grid: dict[str, list], overrides: dict, grid_overrides: dict[str, list]) -> dict[str, list]:
    """The grid's axes after the command line (pops overridden keys from `overrides`), model first
    so the cells of one model are contiguous (one model load each)."""
    axes = {k: v for k, v in grid.items() if k not in overrides}
    for key, values in grid_overrides.items():
        if not values:
            raise UserError(f"--grid {key}= needs at least one value")
        axes[key] = list(values)
        overrides.pop(key, None)
    if "model" in axes:
        axes = {"model": axes.pop("model"), **axes}
    return axes


def _cell(spec: GridSpec, run: dict, axes: dict, overrides: dict) -> Cell:
    model = axes.get("model", overrides.get("model", run.get("model", RunConfig.model)))
    settings = {**run, **spec.per_model.get(str(model), {}), **axes, **overrides}
    config = _make_config(settings, axes, spec.source)
    if not uses_alpha(config.scheme):  # alpha means nothing for iid or natural: one cell, with the fixed alpha
        axes.pop("alpha", None)
        config = _make_config({**settings, "alpha": run.get("alpha", RunConfig.alpha)}, axes, spec.source)
    return Cell("", config, axes)


def _make_config(settings: dict, axes: dict, where: str) -> RunConfig:
    try:
        return from_dict(settings)
    except (UserError, TypeError, ValueError) as exc:
        desc = ", ".join(f"{k}={v}" for k, v in axes.items()) or "the fixed settings"
        raise UserError(f"{where}: the cell with {desc} is not a valid run: {exc}") from None


def _check_unique_names(cells: list[Cell]) -> None:
    seen: set[str] = set()
    for cell in cells:
        if cell.name in seen:
            raise UserError(f"two different cells would share the directory {cell.name!r}; "
                            "give the models distinct names")
        seen.add(cell.name)


# ---------------------------------------------------------------- naming



def model_slug(name: str) -> str:
    """A short directory name for a model: the last path component, safe characters only."""
    return slug(name.rstrip("/").rsplit("/", 1)[-1] or name, "model")


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "+".join(_format_value(v) for v in value)
    return UNSAFE.sub("_", str(value))


def _model_dirs(models: list[str]) -> dict[str, str]:
    """One directory per model; where two models share a slug (two local dirs named alike), the
    first of them (in sorted order) gets a short hash of its full name."""
    dirs = {m: model_slug(m) for m in sorted(models)}
    for m in dirs:
        if list(dirs.values()).count(dirs[m]) > 1:
            dirs[m] = f"{dirs[m]}-{hashlib.sha1(m.encode()).hexdigest()[:6]}"
    return dirs


def _name_cells(cells: list[Cell], grid: dict[str, list]) -> list[Cell]:
    """<model>/<scheme>[-a<alpha>][-<other varying axes>]-s<seed> for each cell."""
    dirs = _model_dirs(sorted({c.config.model for c in cells}))
    varying = [k for k in grid if k not in ("model", "scheme", "alpha", "seed") and len(grid[k]) > 1]
    out = []
    for cell in cells:
        cfg = cell.config
        parts = [cfg.scheme] + ([f"a{cfg.alpha:g}"] if uses_alpha(cfg.scheme) else [])
        parts += [f"{AXIS_TAGS.get(k, k.replace('_', '-'))}{_format_value(cell.axes[k])}"
                  for k in varying if k in cell.axes]
        parts.append(f"s{cfg.seed}")
        out.append(Cell(f"{dirs[cfg.model]}/{'-'.join(parts)}", cfg, cell.axes))
    return out
