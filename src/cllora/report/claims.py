"""The study's qualitative claims, tested on condition rows (stats.condition_rows): one small
function per claim, each returning a verdict (supported / not supported / not testable), how it is
tested and the numbers behind it. `CLAIMS` lists them in the order the report shows them.

Every claim function has the same signature, `(conds, labels=None, model_sizes=None) -> dict`:
`labels` names each setting, `model_sizes` maps a model to its total parameter count.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from cllora.report.stats import (
    by_setting, finite, fmt, fmt_pm, length_sensitivity, mean, model_label, skew_ratio, spearman,
)

SUPPORTED, NOT_SUPPORTED, NOT_TESTABLE = "supported", "not supported", "not testable"
LITTLE_EFFECT = 0.05  # "little effect": local-model loss within 5 % of IID


def _claim(claim: str, source: str, test: str, holds: list[bool], evidence: list[str],
           missing: str) -> dict:
    """The verdict: not testable without a comparison, supported when every comparison holds."""
    if not holds:
        return {"claim": claim, "source": source, "test": test, "verdict": NOT_TESTABLE,
                "evidence": [missing]}
    verdict = SUPPORTED if all(holds) else NOT_SUPPORTED
    if verdict == NOT_SUPPORTED and len(holds) > 1:
        evidence = evidence + [f"holds in {sum(holds)} of {len(holds)} comparisons"]
    return {"claim": claim, "source": source, "test": test, "verdict": verdict, "evidence": evidence}


def _name(setting: str, entry: dict, labels: dict[str, str] | None) -> str:
    return (labels or {}).get(setting, model_label(entry["model"]))


def claim_iid_best_quantity(conds: list[dict], labels: dict[str, str] | None = None,
                            model_sizes: dict[str, int] | None = None) -> dict:
    """IID gives the lowest final global test loss under quantity skew (study, Fig. 7)."""
    holds, evidence = [], []
    for setting, e in by_setting(conds).items():
        if e["iid"] is None or not e["quantity"]:
            continue
        qs = e["quantity"]
        best_q = min(qs.values(), key=lambda r: r["final_loss"])
        holds.append(e["iid"]["final_loss"] < best_q["final_loss"])
        evidence.append(f"{_name(setting, e, labels)}: IID {fmt_pm(e['iid'])}; "
                        + ", ".join(f"{r['label']} {fmt_pm(r)}" for _, r in sorted(qs.items())))
    return _claim("IID gives the lowest global test loss under quantity skew", "Fig. 7",
                  "final global test loss (mean over seeds) of IID below every quantity-skew α",
                  holds, evidence, "needs IID and quantity-skew runs of the same setting")


def claim_alpha100_worst_quantity(conds: list[dict], labels: dict[str, str] | None = None,
                                  model_sizes: dict[str, int] | None = None) -> dict:
    """α = 100 gives the highest final global test loss under quantity skew (study, Fig. 7)."""
    holds, evidence = [], []
    for setting, e in by_setting(conds).items():
        qs = e["quantity"]
        others = [r for a, r in qs.items() if a != 100.0] + ([e["iid"]] if e["iid"] else [])
        if 100.0 not in qs or not others:
            continue
        worst_other = max(others, key=lambda r: r["final_loss"])
        holds.append(qs[100.0]["final_loss"] > worst_other["final_loss"])
        evidence.append(f"{_name(setting, e, labels)}: α = 100 {fmt_pm(qs[100.0])}; "
                        f"worst of the others {worst_other['label']} {fmt_pm(worst_other)}")
    return _claim("α = 100 is worst under quantity skew", "Fig. 7",
                  "final global test loss of quantity-skew α = 100 above every other α and IID",
                  holds, evidence, "needs a quantity-skew run with α = 100 and another condition "
                                   "of the same setting")


def claim_small_models_length_sensitive(conds: list[dict], labels: dict[str, str] | None = None,
                                        model_sizes: dict[str, int] | None = None) -> dict:
    """Smaller models are more sensitive to length skew (study, Fig. 6 and its analysis).

    Sensitivity of a model = (max − min) / mean of the final global loss over its length-skew α
    values and IID. Supported when sensitivity falls with model size (Spearman ρ < 0; with two
    models: the smaller one is more sensitive).
    """
    sizes = model_sizes or {}
    points: dict[str, list[float]] = {}
    for e in by_setting(conds).values():
        s = length_sensitivity(e)
        if s is not None and e["model"] in sizes:
            points.setdefault(e["model"], []).append(s)
    models = sorted(points, key=lambda m: sizes[m])
    sens = [float(np.mean(points[m])) for m in models]
    holds, evidence = [], []
    if len(models) >= 2:
        rho = spearman([sizes[m] for m in models], sens)
        holds.append(rho < 0)
        evidence = [", ".join(f"{model_label(m)} ({sizes[m] / 1e6:.0f} M params): {s:.3%}"
                              for m, s in zip(models, sens)), f"Spearman ρ(size, sensitivity) = {rho:+.2f}"]
    found = ", ".join(f"{model_label(m)} {s:.3%}" for m, s in zip(models, sens))
    return _claim("smaller models are more sensitive to length skew", "Fig. 6, analysis",
                  "sensitivity = (max − min) / mean of final global loss over length-skew α and IID; "
                  "supported if it falls with model size (Spearman ρ < 0)", holds, evidence,
                  "needs length-skew runs of at least 2 models of known size"
                  + (f"; have {found}" if found else ""))


def claim_quantity_fairness_worse(conds: list[dict], labels: dict[str, str] | None = None,
                                  model_sizes: dict[str, int] | None = None) -> dict:
    """Quantity skew hurts fairness more than length skew (study, Figs. 8 and 9).

    Unfairness of a condition = local_spread (variance across clients of the local models' own
    test loss, averaged over rounds), relative to IID of the same setting, at the smallest α run
    under both schemes. Supported when quantity's ratio exceeds length's for every model.
    """
    by_model: dict[str, dict[str, list]] = {}
    for e in by_setting(conds).values():
        for scheme in ("length", "quantity"):
            if e[scheme] and e["iid"] is not None:
                by_model.setdefault(e["model"], {}).setdefault(scheme, []).append(e)
    holds, evidence = [], []
    for model, schemes in by_model.items():
        if "length" not in schemes or "quantity" not in schemes:
            continue
        common = sorted(set.intersection(*[set(e[s]) for s in ("length", "quantity") for e in schemes[s]]))
        if not common:
            continue
        alpha = common[0]
        ratios = {s: mean(skew_ratio(e, s, "local_spread", alpha) for e in schemes[s])
                  for s in ("length", "quantity")}
        if not all(finite(v) for v in ratios.values()):
            continue
        holds.append(ratios["quantity"] > ratios["length"])
        evidence.append(f"{model_label(model)}, α = {alpha:g}: local-model loss variance vs IID "
                        f"×{ratios['quantity']:.2f} under quantity skew, ×{ratios['length']:.2f} "
                        "under length skew")
    return _claim("quantity skew hurts fairness more than length skew", "Figs. 8, 9",
                  "variance across clients of the local models' own-split test loss (mean over rounds), "
                  "as a multiple of IID's, at the smallest α run under both schemes",
                  holds, evidence, "needs length- and quantity-skew runs with a common α, each with "
                                   "an IID run of the same setting, for one model")


def claim_length_little_local_effect(conds: list[dict], labels: dict[str, str] | None = None,
                                     model_sizes: dict[str, int] | None = None) -> dict:
    """Length skew has little effect on local training (study, Fig. 8): the local models' mean
    test loss at the smallest length-skew α is within LITTLE_EFFECT (relative) of IID's."""
    holds, evidence = [], []
    for setting, e in by_setting(conds).items():
        if e["iid"] is None or not e["length"]:
            continue
        alpha = min(e["length"])
        row, iid = e["length"][alpha], e["iid"]
        if not (finite(row["local_loss"]) and finite(iid["local_loss"])):
            continue
        rel = (row["local_loss"] - iid["local_loss"]) / iid["local_loss"]
        holds.append(abs(rel) <= LITTLE_EFFECT)
        evidence.append(f"{_name(setting, e, labels)}: local models' test loss "
                        f"α = {alpha:g} {fmt(row['local_loss'])} vs IID {fmt(iid['local_loss'])} "
                        f"({rel:+.1%})")
    return _claim("length skew has little effect on local training", "Fig. 8",
                  f"mean test loss of the local models on their own split (mean over rounds) at the "
                  f"smallest length-skew α within {LITTLE_EFFECT:.0%} of IID's",
                  holds, evidence, "needs length-skew and IID runs of the same setting with local "
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
    """Every claim of CLAIMS, each with its verdict and the numbers behind it."""
    return [claim(conds, labels, model_sizes) for claim in CLAIMS]
