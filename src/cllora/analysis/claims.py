"""The study's qualitative claims, tested on condition rows (conditions.condition_rows): one small
function per claim (cllora's own claims are in `own_claims`, those about federated methods in
`method_claims`). Each claim is an *effect* that the study predicts to be positive (or, for
"little effect", inside ±LITTLE_LOCAL_EFFECT nats), estimated per comparison (per model or setting) by stats.compare
with its 95 % interval and number of seeds, and a three-way verdict: supported, contradicted or
inconclusive (not testable without the runs it needs). `CLAIMS` lists them in the report's order.

Every claim function has the same signature, `(conds, labels=None, model_sizes=None) -> dict`:
`labels` names each setting, `model_sizes` maps a model to its total parameter count.
"""

from __future__ import annotations

from typing import Callable

from cllora.analysis.conditions import (
    experiment_settings,
    length_pairs,
    length_sensitivity,
    model_label,
    setting_name,
)
from cllora.analysis.budget_claims import BUDGET_CLAIMS
from cllora.analysis.method_claims import METHOD_CLAIMS
from cllora.analysis.own_claims import OWN_CLAIMS
from cllora.analysis.stats import finite, fmt, fmt_pm, relative_range, spearman
from cllora.analysis.plans import Plan
from cllora.analysis.verdicts import apply_plan, claim_record, estimate, every_one

LITTLE_LOCAL_EFFECT = 0.02
"""nats/token: "little effect" on local training is a change from round 0 within ±0.02 nats of
IID's, the scale the other claims treat as relevant (0.01-0.02 nats; the study-budget plans carry it
as the claim's `margin`). The ±5 % of the loss used before was about 0.17 nats."""


def claim_iid_best_quantity(conds: list[dict], labels: dict[str, str] | None = None,
                            model_sizes: dict[str, int] | None = None) -> dict:
    """IID gives the lowest final global test loss under quantity skew (study, Fig. 7).
    Effect: each quantity-skew α's final loss minus IID's (> 0: IID lower), every α its own paired
    comparison (verdicts.every_one); the headline is the α closest to IID."""
    comparisons = []
    for setting, e in experiment_settings(conds, local=False).items():
        if e["iid"] is None or not e["quantity"]:
            continue
        rows = [e["iid"]] + [r for _, r in sorted(e["quantity"].items())]
        est = every_one(rows, "final_loss", lambda i: lambda m: m[i + 1] - m[0])
        if est:
            comparisons.append((setting_name(setting, e, labels), est, f"IID {fmt_pm(e['iid'])}; " +
                                ", ".join(f"{r['label']} {fmt_pm(r)}" for r in rows[1:]), e["study"]))
    return claim_record("IID gives the lowest global test loss under quantity skew", "Fig. 7",
                  "effect = final global test loss of each quantity-skew α minus IID's, each paired by "
                  "seed; supported when every α is above IID, contradicted when one is below after "
                  "Holm; the headline is the α closest (nats/token; > 0 supports)", "", comparisons,
                  "needs IID and quantity-skew runs of the same setting", headline="study-quantity")


def claim_alpha100_worst_quantity(conds: list[dict], labels: dict[str, str] | None = None,
                                  model_sizes: dict[str, int] | None = None) -> dict:
    """α = 100 gives the highest final global test loss under quantity skew (study, Fig. 7).
    Effect: α = 100's final loss minus each other α's and IID's, each its own paired comparison
    (verdicts.every_one); the headline is the closest one (> 0: worst)."""
    comparisons = []
    for setting, e in experiment_settings(conds, local=False).items():
        qs = e["quantity"]
        others = [r for a, r in sorted(qs.items()) if a != 100.0] + ([e["iid"]] if e["iid"] else [])
        if 100.0 not in qs or not others:
            continue
        est = every_one([qs[100.0]] + others, "final_loss", lambda i: lambda m: m[0] - m[i + 1])
        if est:
            comparisons.append((setting_name(setting, e, labels), est, f"α = 100 {fmt_pm(qs[100.0])}; " +
                                ", ".join(f"{r['label']} {fmt_pm(r)}" for r in others), e["study"]))
    return claim_record("α = 100 is worst under quantity skew", "Fig. 7",
                  "effect = final global test loss of quantity-skew α = 100 minus each other α's and "
                  "IID's, each paired by seed; supported when it is above every one, contradicted when "
                  "below one after Holm (nats/token; > 0 supports)", "", comparisons,
                  "needs a quantity-skew run with α = 100 and another condition of the same setting",
                  headline="study-quantity")


def claim_small_models_length_sensitive(conds: list[dict], labels: dict[str, str] | None = None,
                                        model_sizes: dict[str, int] | None = None) -> dict:
    """Smaller models are more sensitive to length skew (study, Fig. 6 and its analysis).

    Sensitivity of a model = (max − min) / mean of the final global loss over the length-skew α
    values both compared models ran and IID (its first such setting), so that two models are
    compared over the same conditions (study-size runs only α = 0.1 and IID for the larger model).
    Effect: the smallest model's sensitivity minus the largest one's, per seed (> 0 supports);
    beside it each side's mean over seeds, and with more than two models Spearman ρ over all of
    them (each over its own conditions). Two models of different families confound size with
    family: the claim's text says so.
    """
    sizes = model_sizes or {}
    entries: dict[str, dict] = {}
    for e in experiment_settings(conds, local=False).values():
        if e["study"] and e["model"] in sizes and length_sensitivity(e) is not None:
            entries.setdefault(e["model"], e)
    models = sorted(entries, key=lambda m: sizes[m])
    sens = [length_sensitivity(entries[m]) for m in models]
    comparisons = []
    if len(models) >= 2:
        small_e, big_e = entries[models[0]], entries[models[-1]]
        common = sorted(set(small_e["length"]) & set(big_e["length"]))
        small = [small_e["length"][a] for a in common] + [small_e["iid"]]
        big = [big_e["length"][a] for a in common] + [big_e["iid"]]
        k = len(small)
        est = estimate(small + big, "final_loss", lambda m: relative_range(m[:k]) - relative_range(m[k:])) \
            if common and small_e["iid"] and big_e["iid"] else None
        if est:
            # each side of the effect: its mean over seeds of the same per-seed relative range, in
            # the label's order (no model names: a model that is a setting's whole label would be
            # renamed to that setting's name in the report)
            sides = [estimate(arm, "final_loss", relative_range, texts=False)["effect"] for arm in (small, big)]
            detail = (f"sensitivity over IID and α = {', '.join(f'{a:g}' for a in common)}, mean over seeds: "
                      + " vs ".join(f"{s:.2%} ({sizes[m] / 1e6:.0f} M params)"
                                    for m, s in zip((models[0], models[-1]), sides)))
            if len(models) > 2:  # with two models ρ is ±1 by construction
                detail += f"; Spearman ρ(size, sensitivity) over {len(models)} models = " \
                          f"{spearman([sizes[m] for m in models], sens):+.2f}"
            comparisons.append((f"{model_label(models[0])} vs {model_label(models[-1])}", est, detail, True))
    found = ", ".join(f"{model_label(m)} {s:.3%}" for m, s in zip(models, sens))
    return claim_record("smaller models are more sensitive to length skew", "Fig. 6, analysis",
                  "sensitivity = (max − min) / mean of the final global loss over the length-skew α both "
                  "models ran and IID; effect = smallest model's sensitivity minus the largest's (> 0 "
                  "supports); two models of different families confound size with family", "%",
                  comparisons, "needs length-skew runs of at least 2 models of known size"
                  + (f"; have {found}" if found else ""))


def claim_quantity_fairness_worse(conds: list[dict], labels: dict[str, str] | None = None,
                                  model_sizes: dict[str, int] | None = None) -> dict:
    """Quantity skew hurts fairness more than length skew (study, Figs. 8 and 9).

    Unfairness of a condition = local_spread_corrected: the variance across clients of the local
    models' own-split test loss with its sampling noise removed ((N−1)/N of the mean squared
    standard error, not floored, so it stays unbiased over rounds and seeds), mean over rounds.
    A raw variance would grow with quantity skew by itself: small clients get tiny test splits.
    Effect: quantity's excess over IID minus length's excess over IID, at the smallest α run
    under both schemes, nats² (> 0 supports), from one study setting that ran both schemes where
    there is one (the study's local experiment), else a model's first setting of each.
    """
    by_model: dict[str, dict[str, dict]] = {}
    entries = [e for e in experiment_settings(conds, local=True).values() if e["study"] and e["iid"] is not None]
    both = [e for e in entries if e["length"] and e["quantity"]]
    for e in both + entries:  # one setting that ran both schemes (Figs. 8, 9) comes first
        for scheme in ("length", "quantity"):
            if e[scheme]:
                by_model.setdefault(e["model"], {}).setdefault(scheme, e)
    comparisons = []
    for model, schemes in by_model.items():
        common = sorted(set(schemes.get("length", {}).get("length", {}))
                        & set(schemes.get("quantity", {}).get("quantity", {})))
        if not common:
            continue
        alpha, q, ln = common[0], schemes["quantity"], schemes["length"]
        rows = [q["quantity"][alpha], q["iid"], ln["length"][alpha], ln["iid"]]
        if not all(finite(r.get("local_spread_corrected")) for r in rows):
            continue
        est = estimate(rows, "local_spread_corrected", lambda m: (m[0] - m[1]) - (m[2] - m[3]), texts=False)
        excess = [a["local_spread_corrected"] - b["local_spread_corrected"] for a, b in (rows[:2], rows[2:])]
        if est:
            comparisons.append((f"{model_label(model)}, α = {alpha:g}", est,
                                f"corrected local-model loss variance minus IID's: {excess[0]:+.5f} under "
                                f"quantity skew, {excess[1]:+.5f} under length skew" + _legacy_note(rows), True))
    return claim_record("quantity skew hurts fairness more than length skew", "Figs. 8, 9",
                        "noise-corrected variance across clients of the local models' own-split test "
                        "loss (mean over rounds) minus IID's, at the smallest α run under both schemes; "
                        "effect = quantity's excess minus length's (nats²; > 0 supports)", "", comparisons,
                        "needs length- and quantity-skew runs with a common α, each with an IID run of "
                        "the same setting, recorded with local-model standard errors", headline="study-local")


def _legacy_note(rows: list[dict]) -> str:
    """What the legacy standard errors leave in a contrast (q − q_iid) − (l − l_iid) of
    local_spread_corrected (cllora.analysis.fairness.legacy_bias), or "" when no row is legacy."""
    bias = [r.get("local_spread_legacy_bias") for r in rows]
    if not any(finite(b) for b in bias):
        return ""
    b = [x if finite(x) else 0.0 for x in bias]
    return (f"; legacy estimator, biased upwards by about {b[0] - b[1]:+.4f} (quantity's excess) and "
            f"{b[2] - b[3]:+.4f} (length's), so the effect by about {(b[0] - b[1]) - (b[2] - b[3]):+.4f} nats²")


def claim_length_little_local_effect(conds: list[dict], labels: dict[str, str] | None = None,
                                     model_sizes: dict[str, int] | None = None) -> dict:
    """Length skew has little effect on local training (study, Fig. 8). Effect: the local models'
    change from round 0 (own-split test loss minus the untrained model's on the same split, mean
    over trained rounds: cllora.analysis.local.local_change) at the smallest length-skew α minus
    IID's, paired by seed, in nats; supported when its interval lies within ±LITTLE_LOCAL_EFFECT,
    contradicted when it lies entirely outside. A difference between the two conditions' test
    splits before training (round 0) cancels."""
    comparisons = []
    for setting, e, alpha, row, iid in length_pairs(conds, local=True):
        if not (finite(row.get("local_change")) and finite(iid.get("local_change"))):
            continue
        est = estimate([row, iid], "local_change", lambda m: m[0] - m[1], texts=False,
                       bound_low=-LITTLE_LOCAL_EFFECT, bound_high=LITTLE_LOCAL_EFFECT)
        if est:
            comparisons.append((setting_name(setting, e, labels), est,
                                f"local models' change from round 0 α = {alpha:g} {row['local_change']:+.4f} "
                                f"vs IID {iid['local_change']:+.4f} nats", e["study"]))
    return claim_record("length skew has little effect on local training", "Fig. 8",
                        "effect = local models' own-split test loss minus the round-0 model's on the same "
                        "split (mean over trained rounds) at the smallest length-skew α, minus IID's, "
                        f"paired by seed (nats/token); supported when within ±{LITTLE_LOCAL_EFFECT:g} nats",
                        "", comparisons, "needs length-skew and IID runs of the same setting with local "
                                         "evaluations and round-0 split losses")


Claim = Callable[..., dict]
STUDY_CLAIMS: tuple[Claim, ...] = (
    claim_iid_best_quantity,
    claim_alpha100_worst_quantity,
    claim_small_models_length_sensitive,
    claim_quantity_fairness_worse,
    claim_length_little_local_effect,
)
CLAIMS: tuple[Claim, ...] = STUDY_CLAIMS + BUDGET_CLAIMS + OWN_CLAIMS + METHOD_CLAIMS


def claim_id(claim: Claim) -> str:
    """A claim's id (plans and claims.json name it so): its function's name without "claim_"."""
    return claim.__name__.removeprefix("claim_")


def records_by_claim(records: list[dict]) -> dict[str, list[dict]]:
    """Claim records (as claims.json holds them) by claim id, in first-seen order: a claim's records
    at each budget together (older records without an id go by their claim text)."""
    out: dict[str, list[dict]] = {}
    for record in records:
        out.setdefault(record.get("id", record["claim"]), []).append(record)
    return out


def evaluate_claims(conds: list[dict], model_sizes: dict[str, int] | None = None,
                    labels: dict[str, str] | None = None, plans: dict[str, Plan] | None = None) -> list[dict]:
    """Every claim of CLAIMS, each with its id, verdict, effect, interval and the numbers behind
    it, re-decided under the plans of its sweeps (`plans`: sweep folder -> Plan) where one declares it."""
    return [{"id": claim_id(claim), **apply_plan(claim(conds, labels, model_sizes), claim_id(claim), plans or {})}
            for claim in CLAIMS]
