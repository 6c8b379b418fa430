"""A claim's verdict from its comparisons (pure): every claim function in `claims`, `own_claims` and
`method_claims` builds (label, estimate, detail, decides) comparisons with `estimate` and turns them
into one claim record with `claim_record`.

- Which seeds: a comparison is decided on its sweeps' planned seeds only (cllora.analysis.plans),
  all of them: a planned seed not run yet leaves it inconclusive; seeds beyond the plan are an
  *extension*, estimated and shown, never a verdict. Sweeps without a plan are said to be unplanned.
- Which settings decide: only the study's own (FedAvg, replicate 0, no DP, no natural clients);
  other settings are shown as rows of their own, never a veto.
- One family per claim, fixed in advance: "holm" (any deciding comparison may decide, Holm's
  correction over the claim's own deciding comparisons, nothing else) or "intersection-union"
  (every deciding comparison must reach the same verdict at the level; no correction needed).
  The claim function declares it; a plan may declare it instead.
- The headline is the setting the claim declares (a sweep name, optionally "/<condition>"), or
  its plan's; never picked by seed count or sort order. A claim with one deciding comparison
  shows that one.
"""

from __future__ import annotations

from cllora.analysis.conditions import seed_texts, seed_values
from cllora.analysis.plans import EXTENSION, Plan, planned_mde
from cllora.analysis.stats import (
    CONTRADICTED,
    INCONCLUSIVE,
    LEVEL,
    SUPPORTED,
    compare,
    finite,
    fmt_effect,
    fmt_excluded,
    fmt_mde,
    holm,
)
from cllora.errors import UserError

NOT_TESTABLE = "not testable"
VERDICTS = (SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_TESTABLE)
FAMILIES = ("holm", "intersection-union")
Comparison = tuple[str, dict, str, bool]  # label, stats.compare estimate, detail, decides the verdict
HEADLINE_KEYS = ("effect", "low", "high", "seeds", "text_interval", "method", "interval90", "extension")


def _common(values: list[dict]) -> set:
    return set.intersection(*(set(v) for v in values)) if values else set()


def estimate(rows: list[dict], key: str, contrast, texts: bool = True, **bounds) -> dict | None:
    """stats.compare on `key` of these conditions over their planned seeds (per-text losses used
    when `texts`), with the sweeps it comes from, whether they were planned, and the extension's
    estimate over every seed where seeds beyond the plan ran."""
    values = seed_values(rows, key)
    est = compare(values, contrast, seed_texts(rows) if texts else None, **bounds)
    if est is None:
        return None
    runs = [r for c in rows for r in c.get("runs", [])]
    est["sweeps"] = sorted({r["sweep"] for r in runs if r.get("sweep")})
    est["sweep_dirs"] = sorted({r["sweep_dir"] for r in runs if r.get("sweep_dir")})
    kinds = {r.get("plan_kind") for r in runs}
    est["plan"] = "not planned" if None in kinds else "reconstructed" if "reconstructed" in kinds else "planned"
    if est["plan"] != "not planned":
        required = set.intersection(*({s for r in c.get("runs", []) for s in r["plan_seeds"]} for c in rows))
        missing = sorted(required - _common(values))
        if missing:
            est.update(verdict=INCONCLUSIVE, p_value=None, method=est["method"] + f"; planned seed(s) "
                       f"{', '.join(map(str, missing))} not run: no verdict before every planned seed ran")
    every = seed_values(rows, key, extension=True)
    est["extension"] = None
    if len(_common(every)) > len(_common(values)):
        ext = compare(every, contrast, None, **bounds)
        est["extension"] = {"label": EXTENSION, **{k: ext[k] for k in ("seeds", "effect", "low", "high")}}
    return est


def every_one(rows: list[dict], key: str, contrast_of, **bounds) -> dict | None:
    """A claim that one condition beats each of several others ("IID is lowest"): each pair is its
    own paired comparison (`contrast_of(i)` the contrast of pair i over `rows`). Supported when
    every one is (an intersection-union test: no correction needed); contradicted when one is
    contradicted after Holm's correction over the pairs; else inconclusive. Taking the best of
    several noisy conditions per seed instead would be biased: the minimum of noisy equals is
    below their mean. The estimate shown is the deciding pair: the contradicted one, else the one
    with the smallest effect (a rule of the test, fixed in advance)."""
    pairs = [estimate(rows, key, contrast_of(i), **bounds) for i in range(len(rows) - 1)]
    if not pairs or any(p is None for p in pairs):
        return None
    adjusted = holm([p.get("p_value") for p in pairs])
    wrong = [p for p, q in zip(pairs, adjusted) if p["verdict"] == CONTRADICTED and q is not None
             and q < 1 - LEVEL]
    head = wrong[0] if wrong else min(pairs, key=lambda p: p["effect"])
    verdict = SUPPORTED if all(p["verdict"] == SUPPORTED for p in pairs) else \
        CONTRADICTED if wrong else INCONCLUSIVE
    method = head["method"] + f" (each of {len(pairs)} pairs; Holm over them for a contradiction)"
    return {**head, "verdict": verdict, "method": method,
            "pairs": [{k: p.get(k) for k in ("effect", "low", "high", "p_value", "verdict")} for p in pairs]}


def holm_verdicts(estimates: list[dict]) -> None:
    """Holm over a family of comparisons (a strategy table, a claim over several strategies): a
    verdict stands only where its adjusted p-value is below 1 − LEVEL; else it becomes
    inconclusive. Adds `p_holm` to each estimate."""
    adjusted = holm([e.get("p_value") for e in estimates])
    for est, p in zip(estimates, adjusted):
        est["p_holm"] = p
        if est["verdict"] != INCONCLUSIVE and (p is None or p >= 1 - LEVEL):
            est["verdict"] = INCONCLUSIVE
            est["method"] += f"; not significant after Holm's correction over {len(estimates)} comparisons"


def _evidence(c: dict, unit: str, one_method: bool) -> str:
    line = f"{c['label']}: {c['detail']}; effect {fmt_effect(c, unit)}"
    line += "" if one_method else f" ({c['method']})"
    line += f": {c['verdict']}"
    if c["verdict"] == INCONCLUSIVE and fmt_excluded(c, unit):
        line += f" ({fmt_excluded(c, unit)})"
    if finite(c.get("p_holm")):
        line += f" (Holm-adjusted p {c['p_holm']:.3f})"
    ext = c.get("extension")
    if ext:
        line += f"; {ext['label']}: {ext['seeds']} seeds, {fmt_effect(ext, unit)}, no verdict"
    line += {"not planned": " [seeds not planned in advance]",
             "reconstructed": " [plan reconstructed from git history]"}.get(c.get("plan"), "")
    return line + ("" if c["decides"] else " [not a deciding setting: shown, does not decide]")


def matches(comparison: dict, headline: str) -> bool:
    """Whether a comparison is the setting a headline names: "sweep" or "sweep/condition", where
    sweep is one of its sweeps' names or folders (or their name before a "-<suffix>", so
    "study-null" names study-null-quick) and condition part of its label or condition."""
    sweep, _, condition = headline.partition("/")
    names = comparison.get("sweeps", []) + comparison.get("sweep_dirs", [])
    if not any(n == sweep or n.startswith(sweep + "-") for n in names):
        return False
    return not condition or condition in comparison["label"] or condition == comparison.get("condition")


def _headline(deciding: list[dict], declared: tuple[str, ...]) -> dict | None:
    for name in declared:
        found = [c for c in deciding if matches(c, name)]
        if found:
            return found[0]
    return deciding[0] if len(deciding) == 1 else None


def _family_verdict(deciding: list[dict], family: str) -> str:
    """The claim's verdict over its deciding comparisons under its family (module docstring)."""
    if family == "intersection-union":
        verdicts = {c["verdict"] for c in deciding}
        return verdicts.pop() if len(verdicts) == 1 and INCONCLUSIVE not in verdicts else INCONCLUSIVE
    adjusted = holm([c.get("p_value") for c in deciding])
    decided = set()
    for c, p in zip(deciding, adjusted):
        c["p_holm"] = p
        if c["verdict"] in (SUPPORTED, CONTRADICTED) and p is not None and p < 1 - LEVEL:
            decided.add(c["verdict"])
    return decided.pop() if len(decided) == 1 else INCONCLUSIVE


def decide(out: dict) -> dict:
    """(Re)decide a claim record from its comparisons, family and declared headline; fills its
    verdict, headline effect and evidence lines."""
    comps = out["comparisons"]
    deciding = [c for c in comps if c["decides"]]
    for c in comps:
        c["p_holm"] = None
    out.update(verdict=NOT_TESTABLE, **{k: None for k in HEADLINE_KEYS}, headline=None)
    out["seeds"] = 0
    if comps and not deciding:
        out["evidence"] = [f"{out['missing']} in the study's setting (FedAvg, replicate 0)"]
    elif not comps:
        out["evidence"] = [out["missing"]]
    if deciding:
        out["verdict"] = _family_verdict(deciding, out["family"])
        head = _headline(deciding, out["headline_setting"])
        if head is not None:
            out.update({k: head.get(k) for k in HEADLINE_KEYS}, headline=head["label"])
        out["plan"] = next((p for p in ("not planned", "reconstructed") if any(c.get("plan") == p for c in deciding)),
                           "planned")
    if comps:
        one_method = len({c["method"] for c in comps}) == 1
        out["evidence"] = out["evidence"][:1] if not deciding else []
        if deciding and out["headline"] is None:
            out["evidence"].append(f"no headline: the declared setting ({', '.join(out['headline_setting']) or 'none'}) "
                                   "has no deciding comparison")
        out["evidence"] += [_evidence(c, out["unit"], one_method) for c in comps]
    if finite(out.get("mde")):
        out["evidence"].append(f"planning minimal detectable effect {fmt_mde(out, out['unit'])} "
                               f"({out['mde_basis']}): a planning number, not what the interval excludes")
    return out


def claim_record(claim: str, source: str, test: str, unit: str, comparisons: list[Comparison],
                 missing: str, *, family: str = "holm", headline: str | tuple[str, ...] = ()) -> dict:
    """A claim's record: its comparisons, its family ("holm" or "intersection-union") and the
    setting its headline shows (sweep names in order of preference), decided by `decide`; a plan
    may re-declare both (apply_plan). Not testable without a deciding comparison."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, got {family!r}")
    out = {"claim": claim, "source": source, "test": test, "unit": unit, "family": family,
           "headline_setting": [headline] if isinstance(headline, str) else list(headline),
           "missing": missing, "mde": None, "mde_basis": None, "margin": None, "method": "",
           "evidence": [], "plan": None,
           "comparisons": [{"label": label, "detail": detail, "decides": decides,
                            **{k: v for k, v in est.items() if k != "per_seed"}}
                           for label, est, detail, decides in comparisons]}
    return decide(out)


def apply_plan(record: dict, claim_id: str, plans: dict[str, Plan]) -> dict:
    """Re-decide a claim record under the plan of its deciding comparisons' sweeps (`plans`: folder
    -> Plan) where one declares this claim: its family, headline, margin and planning sd (the
    planning MDE at the plan's seeds). Two plans declaring the claim differently: UserError."""
    folders = sorted({d for c in record["comparisons"] if c["decides"] for d in c.get("sweep_dirs", [])})
    found = [(f, plans[f]) for f in folders if f in plans and claim_id in plans[f].claims]
    declared = {(p.claims[claim_id], p.seeds, p.level) for _, p in found}
    if not declared:
        return record
    if len(declared) > 1:
        raise UserError(f"the plans in {', '.join(sorted(f for f, _ in found))} declare claim {claim_id!r} "
                        "differently; one claim has one plan")
    folder, plan = found[0]
    cp = plan.claims[claim_id]
    if cp.family:
        record["family"] = cp.family
    if cp.headline:
        record["headline_setting"] = [cp.headline]
    mde = planned_mde(plan, cp)
    record.update(margin=cp.margin, mde=mde, mde_basis=None if mde is None else
                  f"planning sd {cp.planning_sd:g} at {len(plan.seeds)} planned seeds, {folder}/plan.toml")
    decide(record)
    if cp.margin:
        head = next((c for c in record["comparisons"] if c["label"] == record["headline"]), None)
        i90 = (head or {}).get("interval90") or [None, None]
        inside = finite(i90[0]) and finite(i90[1]) and -cp.margin < i90[0] and i90[1] < cp.margin
        record["negligible"] = bool(inside)
        record["evidence"].append(f"equivalence against the planned margin ±{cp.margin:g}: the 90 % interval "
                                  + ("lies inside it: negligible" if inside else "does not lie inside it"))
    return record
