"""The study's qualitative claims, tested on condition rows (conditions.condition_rows): one small
function per claim. Each claim is an *effect* that the study predicts to be positive (or, for
"little effect", inside ±5 %), estimated per comparison (per model or setting) by stats.compare
with its 95 % interval and number of seeds, and a three-way verdict: supported, contradicted or
inconclusive (not testable without the runs it needs). `CLAIMS` lists them in the report's order.

Every claim function has the same signature, `(conds, labels=None, model_sizes=None) -> dict`:
`labels` names each setting, `model_sizes` maps a model to its total parameter count.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from cllora.report.conditions import (
    by_setting, length_rows, length_sensitivity, model_label, seed_texts, seed_values,
)
from cllora.report.stats import (
    CONTRADICTED, INCONCLUSIVE, SUPPORTED, combine, compare, finite, fmt, fmt_effect, fmt_pm,
    relative_range, spearman,
)

NOT_TESTABLE = "not testable"
VERDICTS = (SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_TESTABLE)
LITTLE_EFFECT = 0.05  # "little effect": local-model loss within 5 % of IID


def _compare(rows: list[dict], key: str, contrast, texts: bool = True, **bounds) -> dict | None:
    """stats.compare on `key` of these conditions (per-text losses used when `texts`)."""
    return compare(seed_values(rows, key), contrast, seed_texts(rows) if texts else None, **bounds)


def _claim(claim: str, source: str, test: str, unit: str, comparisons: list[tuple[str, dict, str]],
           missing: str) -> dict:
    """The verdict over (label, estimate, detail) comparisons: not testable without one; else
    supported when every one is, contradicted when any is. The headline effect is the deciding
    comparison: the first contradicted, else the first inconclusive, else the first."""
    out = {"claim": claim, "source": source, "test": test, "unit": unit, "verdict": NOT_TESTABLE,
           "effect": None, "low": None, "high": None, "seeds": 0, "method": "", "evidence": [missing],
           "comparisons": []}
    if not comparisons:
        return out
    verdicts = [est["verdict"] for _, est, _ in comparisons]
    head = next((est for v in (CONTRADICTED, INCONCLUSIVE) for _, est, _ in comparisons
                 if est["verdict"] == v), comparisons[0][1])
    out.update({k: head[k] for k in ("effect", "low", "high", "seeds", "method")}, verdict=combine(verdicts))
    out["comparisons"] = [{"label": label, **{k: v for k, v in est.items() if k != "per_seed"}}
                          for label, est, _ in comparisons]
    one_method = len({est["method"] for _, est, _ in comparisons}) == 1
    out["evidence"] = [f"{label}: {detail}; effect {fmt_effect(est, unit)}"
                       + ("" if one_method else f" ({est['method']})") + f": {est['verdict']}"
                       for label, est, detail in comparisons]
    return out


def _name(setting: str, entry: dict, labels: dict[str, str] | None) -> str:
    return (labels or {}).get(setting, model_label(entry["model"]))


def claim_iid_best_quantity(conds: list[dict], labels: dict[str, str] | None = None,
                            model_sizes: dict[str, int] | None = None) -> dict:
    """IID gives the lowest final global test loss under quantity skew (study, Fig. 7).
    Effect: the best quantity-skew α's final loss minus IID's (> 0: IID lowest)."""
    comparisons = []
    for setting, e in by_setting(conds).items():
        if e["iid"] is None or not e["quantity"]:
            continue
        rows = [e["iid"]] + [r for _, r in sorted(e["quantity"].items())]
        est = _compare(rows, "final_loss", lambda m: np.min(m[1:], axis=0) - m[0])
        if est:
            comparisons.append((_name(setting, e, labels), est, f"IID {fmt_pm(e['iid'])}; " +
                                ", ".join(f"{r['label']} {fmt_pm(r)}" for r in rows[1:])))
    return _claim("IID gives the lowest global test loss under quantity skew", "Fig. 7",
                  "effect = final global test loss of the best quantity-skew α minus IID's "
                  "(nats/token; > 0 supports)", "", comparisons,
                  "needs IID and quantity-skew runs of the same setting")


def claim_alpha100_worst_quantity(conds: list[dict], labels: dict[str, str] | None = None,
                                  model_sizes: dict[str, int] | None = None) -> dict:
    """α = 100 gives the highest final global test loss under quantity skew (study, Fig. 7).
    Effect: α = 100's final loss minus the worst of the other α values and IID (> 0: worst)."""
    comparisons = []
    for setting, e in by_setting(conds).items():
        qs = e["quantity"]
        others = [r for a, r in sorted(qs.items()) if a != 100.0] + ([e["iid"]] if e["iid"] else [])
        if 100.0 not in qs or not others:
            continue
        est = _compare([qs[100.0]] + others, "final_loss", lambda m: m[0] - np.max(m[1:], axis=0))
        if est:
            comparisons.append((_name(setting, e, labels), est, f"α = 100 {fmt_pm(qs[100.0])}; " +
                                ", ".join(f"{r['label']} {fmt_pm(r)}" for r in others)))
    return _claim("α = 100 is worst under quantity skew", "Fig. 7",
                  "effect = final global test loss of quantity-skew α = 100 minus the highest of the "
                  "other α values and IID (nats/token; > 0 supports)", "", comparisons,
                  "needs a quantity-skew run with α = 100 and another condition of the same setting")


def claim_small_models_length_sensitive(conds: list[dict], labels: dict[str, str] | None = None,
                                        model_sizes: dict[str, int] | None = None) -> dict:
    """Smaller models are more sensitive to length skew (study, Fig. 6 and its analysis).

    Sensitivity of a model = (max − min) / mean of the final global loss over its length-skew α
    values and IID (its first such setting). Effect: the smallest model's sensitivity minus the
    largest one's (> 0 supports); Spearman ρ over all models is shown beside it.
    """
    sizes = model_sizes or {}
    entries: dict[str, dict] = {}
    for e in by_setting(conds).values():
        if e["model"] in sizes and length_sensitivity(e) is not None:
            entries.setdefault(e["model"], e)
    models = sorted(entries, key=lambda m: sizes[m])
    sens = [length_sensitivity(entries[m]) for m in models]
    comparisons = []
    if len(models) >= 2:
        small, big = length_rows(entries[models[0]]), length_rows(entries[models[-1]])
        k = len(small)
        est = _compare(small + big, "final_loss", lambda m: relative_range(m[:k]) - relative_range(m[k:]))
        rho = spearman([sizes[m] for m in models], sens)
        detail = ", ".join(f"{model_label(m)} ({sizes[m] / 1e6:.0f} M params): {s:.3%}"
                           for m, s in zip(models, sens)) + f"; Spearman ρ(size, sensitivity) = {rho:+.2f}"
        if est:
            comparisons.append((f"{model_label(models[0])} vs {model_label(models[-1])}", est, detail))
    found = ", ".join(f"{model_label(m)} {s:.3%}" for m, s in zip(models, sens))
    return _claim("smaller models are more sensitive to length skew", "Fig. 6, analysis",
                  "sensitivity = (max − min) / mean of the final global loss over length-skew α and "
                  "IID; effect = smallest model's sensitivity minus the largest's (> 0 supports)", "%",
                  comparisons, "needs length-skew runs of at least 2 models of known size"
                  + (f"; have {found}" if found else ""))


def claim_quantity_fairness_worse(conds: list[dict], labels: dict[str, str] | None = None,
                                  model_sizes: dict[str, int] | None = None) -> dict:
    """Quantity skew hurts fairness more than length skew (study, Figs. 8 and 9).

    Unfairness of a condition = local_spread (variance across clients of the local models' own
    test loss, averaged over rounds) as a multiple of IID's in the same setting, at the smallest α
    run under both schemes (a model's first setting of each). Effect: quantity's multiple minus
    length's (> 0 supports). Seeds only: there are no per-text losses of local models.
    """
    by_model: dict[str, dict[str, dict]] = {}
    for e in by_setting(conds).values():
        for scheme in ("length", "quantity"):
            if e[scheme] and e["iid"] is not None:
                by_model.setdefault(e["model"], {}).setdefault(scheme, e)
    comparisons = []
    for model, schemes in by_model.items():
        common = sorted(set(schemes.get("length", {}).get("length", {}))
                        & set(schemes.get("quantity", {}).get("quantity", {})))
        if not common:
            continue
        alpha, q, ln = common[0], schemes["quantity"], schemes["length"]
        rows = [q["quantity"][alpha], q["iid"], ln["length"][alpha], ln["iid"]]
        if not all(finite(r["local_spread"]) and r["local_spread"] > 0 for r in rows):
            continue
        est = _compare(rows, "local_spread", lambda m: m[0] / m[1] - m[2] / m[3], texts=False)
        ratio = [a["local_spread"] / b["local_spread"] for a, b in (rows[:2], rows[2:])]
        if est:
            comparisons.append((f"{model_label(model)}, α = {alpha:g}", est,
                                f"local-model loss variance vs IID ×{ratio[0]:.2f} under quantity skew, "
                                f"×{ratio[1]:.2f} under length skew"))
    return _claim("quantity skew hurts fairness more than length skew", "Figs. 8, 9",
                  "variance across clients of the local models' own-split test loss (mean over rounds) "
                  "as a multiple of IID's, at the smallest α run under both schemes; effect = quantity's "
                  "multiple minus length's (> 0 supports)", "", comparisons,
                  "needs length- and quantity-skew runs with a common α, each with an IID run of the "
                  "same setting, for one model")


def claim_length_little_local_effect(conds: list[dict], labels: dict[str, str] | None = None,
                                     model_sizes: dict[str, int] | None = None) -> dict:
    """Length skew has little effect on local training (study, Fig. 8). Effect: the local models'
    mean test loss at the smallest length-skew α relative to IID's; supported when its interval
    lies within ±LITTLE_EFFECT, contradicted when it lies entirely outside."""
    comparisons = []
    for setting, e in by_setting(conds).items():
        if e["iid"] is None or not e["length"]:
            continue
        alpha = min(e["length"])
        row, iid = e["length"][alpha], e["iid"]
        if not (finite(row["local_loss"]) and finite(iid["local_loss"])):
            continue
        est = _compare([row, iid], "local_loss", lambda m: (m[0] - m[1]) / m[1], texts=False,
                       bound_low=-LITTLE_EFFECT, bound_high=LITTLE_EFFECT)
        if est:
            comparisons.append((_name(setting, e, labels), est, f"local models' test loss α = {alpha:g} "
                                f"{fmt(row['local_loss'])} vs IID {fmt(iid['local_loss'])}"))
    return _claim("length skew has little effect on local training", "Fig. 8",
                  f"effect = local models' test loss on their own split (mean over rounds) at the "
                  f"smallest length-skew α relative to IID's; supported when within ±{LITTLE_EFFECT:.0%}",
                  "%", comparisons, "needs length-skew and IID runs of the same setting with local "
                                    "evaluations")


Claim = Callable[..., dict]
CLAIMS: tuple[Claim, ...] = (
    claim_iid_best_quantity,
    claim_alpha100_worst_quantity,
    claim_small_models_length_sensitive,
    claim_quantity_fairness_worse,
    claim_length_little_local_effect,
)


def evaluate_claims(conds: list[dict], model_sizes: dict[str, int] | None = None,
                    labels: dict[str, str] | None = None) -> list[dict]:
    """Every claim of CLAIMS, each with its verdict, effect, interval and the numbers behind it."""
    return [claim(conds, labels, model_sizes) for claim in CLAIMS]
