"""A claim's verdict from its comparisons (pure): every claim function in `claims` and `own_claims`
builds (label, estimate, detail, decides) comparisons with `estimate` and turns them into one
claim record with `claim_record`. Only comparisons in the study's own setting (FedAvg, replicate 0)
decide the verdict; other settings (other strategies, replicates) are shown as rows of their own,
never a veto: several strategies would otherwise multiply the chances of a false contradiction.
"""

from __future__ import annotations

from cllora.analysis.conditions import seed_texts, seed_values
from cllora.analysis.stats import (
    CONTRADICTED,
    INCONCLUSIVE,
    LEVEL,
    SUPPORTED,
    combine,
    compare,
    finite,
    fmt_effect,
    fmt_mde,
    holm,
)

NOT_TESTABLE = "not testable"
VERDICTS = (SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_TESTABLE)
Comparison = tuple[str, dict, str, bool]  # label, stats.compare estimate, detail, decides the verdict


def estimate(rows: list[dict], key: str, contrast, texts: bool = True, **bounds) -> dict | None:
    """stats.compare on `key` of these conditions (per-text losses used when `texts`)."""
    return compare(seed_values(rows, key), contrast, seed_texts(rows) if texts else None, **bounds)


def every_one(rows: list[dict], key: str, contrast_of, **bounds) -> dict | None:
    """A claim that one condition beats each of several others ("IID is lowest"): each pair is its
    own paired comparison (`contrast_of(i)` the contrast of pair i over `rows`). Supported when
    every one is (an intersection-union test: no correction needed); contradicted when one is
    contradicted after Holm's correction over the pairs; else inconclusive. Taking the best of
    several noisy conditions per seed instead would be biased: the minimum of noisy equals is
    below their mean. The headline is the deciding pair: the contradicted one, else the one with
    the smallest effect."""
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
    return {**head, "verdict": verdict, "method": method, "pairs": [p["effect"] for p in pairs]}


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


def _evidence(label: str, est: dict, detail: str, unit: str, decides: bool, one_method: bool) -> str:
    line = f"{label}: {detail}; effect {fmt_effect(est, unit)}"
    line += "" if one_method else f" ({est['method']})"
    line += f": {est['verdict']}"
    if est["verdict"] == INCONCLUSIVE and finite(est.get("mde")):
        line += f" (no effect larger than {fmt_mde(est, unit)} at these seeds)"
    return line + ("" if decides else " [not the study's setting: shown, does not decide]")


def claim_record(claim: str, source: str, test: str, unit: str, comparisons: list[Comparison],
                 missing: str) -> dict:
    """The verdict over the deciding comparisons: not testable without one; else supported when
    every one is, contradicted when any is. The headline effect is the deciding comparison: the
    first contradicted, else the first inconclusive, else the first, where first means the most
    seeds (then the order given)."""
    out = {"claim": claim, "source": source, "test": test, "unit": unit, "verdict": NOT_TESTABLE,
           "effect": None, "low": None, "high": None, "seeds": 0, "mde": None, "text_interval": None,
           "method": "", "evidence": [missing], "comparisons": []}
    deciding = [est for _, est, _, decides in comparisons if decides]
    if comparisons and not deciding:
        out["evidence"] = [f"{missing} in the study's setting (FedAvg, replicate 0)"]
    if deciding:
        deciding = sorted(deciding, key=lambda est: -(est.get("seeds") or 0))  # stable
        head = next((est for v in (CONTRADICTED, INCONCLUSIVE) for est in deciding if est["verdict"] == v),
                    deciding[0])
        out.update({k: head.get(k) for k in ("effect", "low", "high", "seeds", "mde", "text_interval",
                                              "method")}, verdict=combine([e["verdict"] for e in deciding]))
    out["comparisons"] = [{"label": label, "decides": decides, **{k: v for k, v in est.items() if k != "per_seed"}}
                          for label, est, _, decides in comparisons]
    if comparisons:
        one_method = len({est["method"] for _, est, _, _ in comparisons}) == 1
        out["evidence"] = out["evidence"][:1] if not deciding else []
        out["evidence"] += [_evidence(label, est, detail, unit, decides, one_method)
                            for label, est, detail, decides in comparisons]
    return out
