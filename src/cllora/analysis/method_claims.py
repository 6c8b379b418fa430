"""cllora's claims about federated methods (pure functions of condition rows, like `claims`):
whether the adaptive server optimizers (FedAdam, FedYogi) reach a lower global loss than FedAvg,
and whether exact aggregation (FedEx-LoRA, which adds the aggregation error's residual back)
recovers any of length skew's harm (at the smallest length-skew α against IID, as
`conditions.length_pairs` picks them). Both compare strategies within one base setting (every
config key but scheme, alpha, seed and the strategy's own: `strategies.base_setting`), paired by
seed.
"""

from __future__ import annotations

from cllora.analysis.conditions import (
    condition_label,
    is_study_setting,
    length_pairs,
    setting_name,
    setting_values,
)
from cllora.analysis.stats import fmt, fmt_pm
from cllora.analysis.strategies import BASELINE, base_setting, strategy_label
from cllora.analysis.verdicts import claim_record, estimate

ADAPTIVE = ("fedadam", "fedyogi")  # the server optimizers an earlier single seed favoured
EXACT = "fedex-lora"  # FedAvg plus the residual sum p_k B_k A_k - B̄Ā: FedAvg without the aggregation error

Groups = dict[tuple[str, str, float | None], dict[str, dict]]


def method_groups(conds: list[dict]) -> Groups:
    """{(base setting, scheme, alpha): {strategy label: condition row}}."""
    out: Groups = {}
    for row in conds:
        values = setting_values(row["setting"])
        out.setdefault((base_setting(values), row["scheme"], row["alpha"]), {})[strategy_label(values)] = row
    return out


def claim_adaptive_beats_fedavg(conds: list[dict], labels: dict[str, str] | None = None,
                                model_sizes: dict[str, int] | None = None) -> dict:
    """FedAdam and FedYogi reach a lower final global test loss than FedAvg. Effect: FedAvg's final
    loss minus the optimizer's, paired by seed (nats/token; > 0 supports), one comparison per
    optimizer and condition. Family: intersection-union (the claim is that they beat FedAvg in
    every condition: supported only when every deciding comparison is, contradicted only when
    every one is; no correction needed). Headline: FedAdam under length skew in study-strategies."""
    comparisons = []
    for (_, scheme, alpha), rows in method_groups(conds).items():
        avg = rows.get(BASELINE)
        for name in ADAPTIVE:
            if avg is None or name not in rows:
                continue
            est = estimate([avg, rows[name]], "final_loss", lambda m: m[0] - m[1])
            if est:
                est["condition"] = f"{scheme}, {name}"
                label = f"{setting_name(avg['setting'], avg, labels)}, {condition_label(scheme, alpha, with_scheme=True)}, {name}"
                comparisons.append((label, est, f"{name} {fmt_pm(rows[name])} vs FedAvg {fmt_pm(avg)}",
                                    is_study_setting(avg["setting"])))
    return claim_record("the adaptive server optimizers (FedAdam, FedYogi) beat FedAvg", "cllora",
                        "effect = FedAvg's final global test loss minus the optimizer's, per optimizer "
                        "and condition (nats/token; > 0 supports); intersection-union: every deciding comparison "
                        "must agree", "", comparisons, "needs FedAvg and FedAdam or FedYogi runs of the same "
                        "setting (cllora sweep --preset study-strategies)", family="intersection-union",
                        headline="study-strategies/length, fedadam")


def claim_exact_aggregation_recovers(conds: list[dict], labels: dict[str, str] | None = None,
                                     model_sizes: dict[str, int] | None = None) -> dict:
    """Removing the aggregation error recovers some of the harm of length skew. Harm = the final global
    loss at the smallest length-skew α minus IID's; effect = FedAvg's harm minus FedEx-LoRA's,
    paired by seed (nats/token; > 0 supports: the exact aggregation is hurt less)."""
    harm: dict[str, dict[str, tuple]] = {}  # base setting -> strategy -> (α, length-skew row, IID row)
    for setting, _, alpha, row, iid in length_pairs(conds):
        values = setting_values(setting)
        harm.setdefault(base_setting(values), {})[strategy_label(values)] = (alpha, row, iid)
    comparisons = []
    for by_strategy in harm.values():
        if BASELINE not in by_strategy or EXACT not in by_strategy:
            continue
        (alpha, *avg), (exact_alpha, *exact) = by_strategy[BASELINE], by_strategy[EXACT]
        if alpha != exact_alpha:
            continue
        four = avg + exact  # FedAvg length, FedAvg IID, FedEx-LoRA length, FedEx-LoRA IID
        est = estimate(four, "final_loss", lambda m: (m[0] - m[1]) - (m[2] - m[3]))
        if est:
            detail = (f"harm FedAvg {fmt(four[0]['final_loss'] - four[1]['final_loss'])}, "
                      f"FedEx-LoRA {fmt(four[2]['final_loss'] - four[3]['final_loss'])} (means over seeds)")
            comparisons.append((f"{setting_name(four[0]['setting'], four[0], labels)}, α = {alpha:g}", est,
                                detail, is_study_setting(four[0]["setting"])))
    return claim_record("removing the aggregation error recovers some of the harm of length skew", "cllora",
                        "harm = final global test loss at the smallest length-skew α minus IID's; effect = "
                        "FedAvg's harm minus FedEx-LoRA's (nats/token; > 0 supports)", "", comparisons,
                        "needs FedAvg and FedEx-LoRA runs under length skew and IID of the same setting "
                        "(cllora sweep --preset study-aggregation)", headline="study-aggregation")


METHOD_CLAIMS = (claim_adaptive_beats_fedavg, claim_exact_aggregation_recovers)
