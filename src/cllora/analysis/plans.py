"""Sweep plans: `plan.toml` beside a sweep's index.json, written before the sweep's first cell runs
(`cllora sweep --plan FILE` copies it there) and committed with the results. A plan fixes the seeds
a verdict uses (all of them, only them), and per claim the deciding setting its headline shows, its
family (Holm over the claim's own comparisons, or intersection-union), its margin and the planning
sd its minimal detectable effect comes from. Runs of seeds outside the plan are an *extension*:
shown, labelled, never a verdict. This module parses and checks plans and finds each run's sweep
(name, budget, plan); nothing here decides a verdict (cllora.analysis.verdicts does).

The format (fixed with the lead; see docs/method.md, "Plans"):

    [plan]   sweep, written, seeds, design = "fixed", level, pilot, reconstructed, note
    [[claims]]   id, headline, family, margin, unit, planning_sd, mde, note

Only the "fixed" design (one look at all planned seeds) is offered: a sequential design with
alpha spending is refused with a sentence saying so.
"""

from __future__ import annotations

import math
import shutil
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from cllora import records
from cllora.analysis.power import planning_mde
from cllora.errors import UserError

PLAN_FILE = "plan.toml"
INDEX_FILE = "index.json"
FAMILIES = ("holm", "intersection-union")
DESIGNS = ("fixed",)
BUDGETS = ("full", "quick", "study")
BUDGET_NAMES = {"quick": "quick scale", "study": "study budget", "full": "full scale"}  # in words


def budget_name(budget: str | None) -> str:
    """A budget in words ("study budget"); an unknown one as it is."""
    return str(BUDGET_NAMES.get(budget, budget))
EXTENSION = "extension (not planned)"


@dataclass(frozen=True)
class ClaimPlan:
    """One claim's declarations in a plan."""

    id: str
    headline: str | None = None  # "sweep" or "sweep/condition": the setting the headline shows
    family: str | None = None  # "holm" or "intersection-union"
    margin: float | None = None
    unit: str = ""
    planning_sd: float | None = None
    mde: float | None = None  # as written in the plan; planned_mde() recomputes it
    note: str = ""


@dataclass(frozen=True)
class Plan:
    """A sweep's plan (plan.toml)."""

    sweep: str
    seeds: tuple[int, ...]
    written: str = ""
    design: str = "fixed"
    level: float = 0.95
    pilot: str = ""
    reconstructed: bool = False
    note: str = ""
    claims: dict[str, ClaimPlan] = field(default_factory=dict)
    source: str = ""  # where it was read from (not part of its content)

    def content(self) -> tuple:
        """Everything the plan says, without where it was read from (two plans are the same plan
        when their contents are equal)."""
        return (self.sweep, self.seeds, self.written, self.design, self.level, self.pilot,
                self.reconstructed, self.note, tuple(sorted(self.claims.items())))


def _get(table: dict, key: str, kind: type | tuple, where: str, default=None, required: bool = False):
    if key not in table:
        if required:
            raise UserError(f"{where}: {key!r} is required")
        return default
    value = table[key]
    if isinstance(value, bool) and kind is not bool:
        raise UserError(f"{where}: {key} must be {_kind_name(kind)}, got {value!r}")
    if not isinstance(value, kind):
        raise UserError(f"{where}: {key} must be {_kind_name(kind)}, got {value!r}")
    return value


def _kind_name(kind) -> str:
    names = {str: "a string", bool: "true or false", list: "a list", int: "an integer"}
    return "a number" if kind == (int, float) else names.get(kind, str(kind))


def _parse_claim(table: dict, where: str) -> ClaimPlan:
    if not isinstance(table, dict):
        raise UserError(f"{where} must be a table, got {table!r}")
    unknown = set(table) - {"id", "headline", "family", "margin", "unit", "planning_sd", "mde", "note"}
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    claim_id = _get(table, "id", str, where, required=True)
    where = f"{where} ({claim_id})"
    family = _get(table, "family", str, where)
    if family is not None and family not in FAMILIES:
        raise UserError(f"{where}: family must be one of {', '.join(FAMILIES)}, got {family!r}")
    numbers = {k: _get(table, k, (int, float), where) for k in ("margin", "planning_sd", "mde")}
    for k, v in numbers.items():
        if v is not None and not (math.isfinite(v) and v >= 0 and (v > 0 or k == "margin")):
            raise UserError(f"{where}: {k} must be a {'non-negative' if k == 'margin' else 'positive'} "
                            f"finite number, got {v!r}")
    return ClaimPlan(id=claim_id, headline=_get(table, "headline", str, where), family=family,
                     unit=_get(table, "unit", str, where, ""), note=_get(table, "note", str, where, ""),
                     **{k: None if v is None else float(v) for k, v in numbers.items()})


def parse_plan(data: dict, where: str = PLAN_FILE) -> Plan:
    """A plan from plan.toml's parsed tables; UserError naming the bad value and what is allowed."""
    head = data.get("plan")
    if not isinstance(head, dict):
        raise UserError(f"{where}: needs a [plan] table with sweep and seeds")
    unknown = set(head) - {"sweep", "written", "seeds", "design", "level", "pilot", "reconstructed", "note",
                           "looks", "spending"}
    if unknown:
        raise UserError(f"{where}: unknown key(s) in [plan]: {', '.join(sorted(unknown))}")
    seeds = _get(head, "seeds", list, where, required=True)
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds) \
            or len(set(seeds)) != len(seeds):
        raise UserError(f"{where}: seeds must be a non-empty list of distinct non-negative integers, got {seeds!r}")
    design = _get(head, "design", str, where, "fixed")
    if design not in DESIGNS or "looks" in head or "spending" in head:
        raise UserError(f"{where}: design must be 'fixed' (one look at all planned seeds), got {design!r}"
                        + ("" if design in DESIGNS else "; a sequential design with alpha spending is not "
                           "offered: plan the seeds you will run, and any more seeds are an extension"))
    level = _get(head, "level", (int, float), where, 0.95)
    if not 0.5 < level < 1:
        raise UserError(f"{where}: level must lie between 0.5 and 1 (e.g. 0.95), got {level!r}")
    claims_raw = data.get("claims", [])
    if not isinstance(claims_raw, list):
        raise UserError(f"{where}: claims must be an array of tables ([[claims]]), got {claims_raw!r}")
    claims = [_parse_claim(c, f"{where} [[claims]] #{i + 1}") for i, c in enumerate(claims_raw)]
    ids = [c.id for c in claims]
    if len(set(ids)) != len(ids):
        raise UserError(f"{where}: a claim id appears twice: {sorted(i for i in ids if ids.count(i) > 1)[0]!r}")
    return Plan(sweep=_get(head, "sweep", str, where, required=True), seeds=tuple(sorted(seeds)),
                written=_get(head, "written", str, where, ""), design=design, level=float(level),
                pilot=_get(head, "pilot", str, where, ""),
                reconstructed=_get(head, "reconstructed", bool, where, False), note=_get(head, "note", str, where, ""),
                claims={c.id: c for c in claims}, source=where)


def read_plan(path: Path) -> Plan:
    """Parse a plan file."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise UserError(f"cannot read the plan {str(path)!r}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from exc
    return parse_plan(data, str(path))


def planned_mde(plan: Plan, claim: ClaimPlan) -> float | None:
    """The claim's minimal detectable effect at the plan's seeds and its planning sd (noncentral t,
    80 % power, two-sided at the plan's level); None without a planning sd."""
    if claim.planning_sd is None or len(plan.seeds) < 2:
        return None
    return planning_mde(claim.planning_sd, len(plan.seeds), plan.level)


def install_plan(plan_file: Path, folder: Path, sweep_name: str) -> Plan:
    """`cllora sweep --plan`: check the plan, then copy it to `folder`/plan.toml before any cell runs.
    Refused (UserError) when the plan names another sweep, when the folder already holds a
    different plan, or when it already holds runs but no plan (a plan comes before the first cell)."""
    plan = read_plan(plan_file)
    if plan.sweep != sweep_name:
        raise UserError(f"the plan {str(plan_file)!r} is for sweep {plan.sweep!r}, but this sweep is "
                        f"{sweep_name!r}; set [plan] sweep = {sweep_name!r} or run the sweep it names")
    target = Path(folder) / PLAN_FILE
    if target.is_file():
        if read_plan(target).content() != plan.content():
            raise UserError(f"{target} holds a different plan than {str(plan_file)!r}: a sweep's plan is "
                            "fixed before its first cell runs; use a new --out folder for a new plan")
        return plan
    index = records.read_json(Path(folder) / INDEX_FILE) or {}
    if any(c.get("status") in ("done", "partial", "running") for c in index.get("cells", [])):
        raise UserError(f"{folder} already holds runs of this sweep and no plan: a plan must be written "
                        "before the first cell runs; use a new --out folder")
    Path(folder).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(plan_file, target)
    return plan


@dataclass(frozen=True)
class Sweep:
    """The sweep a run belongs to: its folder (relative to the report root), its name (index.json's,
    else the folder's), its budget and its plan."""

    folder: str
    name: str
    budget: str | None
    plan: Plan | None


def budget_of(index: dict) -> str | None:
    """index.json's sweep budget ("full", "quick", "study"); older files have only quick: true/false."""
    head = index.get("sweep", {}) if isinstance(index, dict) else {}
    if head.get("budget") in BUDGETS:
        return head["budget"]
    return None if "quick" not in head else ("quick" if head["quick"] else "full")


def find_sweep(run_dir: Path, root: Path, cache: dict[Path, Sweep | None] | None = None) -> Sweep | None:
    """The sweep folder of a run: the nearest folder at or above it, up to `root`, holding
    index.json or plan.toml; None when there is none (a single run)."""
    cache = {} if cache is None else cache
    run_dir, root = Path(run_dir).resolve(), Path(root).resolve()
    for folder in (run_dir, *run_dir.parents):
        if folder in cache:
            return cache[folder]
        if (folder / INDEX_FILE).is_file() or (folder / PLAN_FILE).is_file():
            index = records.read_json(folder / INDEX_FILE) or {}
            plan = read_plan(folder / PLAN_FILE) if (folder / PLAN_FILE).is_file() else None
            name = index.get("sweep", {}).get("name") if isinstance(index, dict) else None
            rel = folder.relative_to(root).as_posix() if folder.is_relative_to(root) else folder.name
            cache[folder] = Sweep(rel if rel != "." else folder.name, str(name or folder.name), budget_of(index), plan)
            return cache[folder]
        if folder == root or folder == folder.parent:
            return None
    return None


def run_fields(sweep: Sweep | None, seed: int) -> dict:
    """What a run row carries about its sweep and plan: sweep name and folder, budget, the plan's
    seeds (None without a plan), whether its seed is planned, and the plan's kind."""
    plan = sweep.plan if sweep else None
    return {"sweep": sweep.name if sweep else None, "sweep_dir": sweep.folder if sweep else None,
            "budget": sweep.budget if sweep else None, "plan_seeds": list(plan.seeds) if plan else None,
            "planned": plan is None or int(seed) in plan.seeds,
            "plan_kind": None if plan is None else "reconstructed" if plan.reconstructed else "planned"}
