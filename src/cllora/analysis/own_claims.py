"""cllora's own claims beyond the study's (pure functions of condition rows, like `claims`):
whether length skew hurts the global model (with the study's text cut and with long texts),
whether the harm grows with text length, and the null experiment (two replicates that differ only
in training randomness must not come out different).
"""

from __future__ import annotations

import json
from typing import Callable

from cllora.analysis.conditions import (
    STUDY_MAX_LENGTH,
    final_classes,
    is_long_context,
    length_pairs,
    model_label,
    setting_name,
    setting_values,
    verdict_runs,
)
from cllora.analysis.stats import CONTRADICTED, INCONCLUSIVE, SUPPORTED, fmt_pm, fmt_signed, t_interval
from cllora.analysis.verdicts import claim_record, estimate


# the study's Fig. 6 setting: study-null's replicate 0 cells are study-length's (the published
# long-context sweep also carries the name study-length-quick, so study-null comes first)
FIG6 = ("study-null", "study-length")


def _skew_harm(conds: list[dict], labels: dict[str, str] | None, long_context: bool) -> list:
    """Final loss at the smallest length-skew α minus IID's, paired by seed and text, for each
    setting of the global experiments that is (or is not) long-context."""
    comparisons = []
    for setting, e, alpha, row, iid in length_pairs(conds):
        if is_long_context(setting) != long_context:
            continue
        est = estimate([row, iid], "final_loss", lambda m: m[0] - m[1])
        if est:
            comparisons.append((setting_name(setting, e, labels), est,
                                f"α = {alpha:g} {fmt_pm(row)} vs IID {fmt_pm(iid)}", e["study"]))
    return comparisons


def claim_length_skew_hurts(conds: list[dict], labels: dict[str, str] | None = None,
                            model_sizes: dict[str, int] | None = None) -> dict:
    """Length skew raises the global model's final test loss, with texts cut where the study cut
    them (STUDY_MAX_LENGTH). Effect: the final loss at the smallest length-skew α minus IID's,
    paired by seed and text (nats/token; > 0 supports)."""
    return claim_record("length skew raises the global test loss", "cllora, the study's Fig. 6 setting",
                        "effect = final global test loss at the smallest length-skew α minus IID's "
                        "(nats/token; > 0 supports); Holm over the deciding settings", "",
                        _skew_harm(conds, labels, long_context=False),
                        "needs length-skew and IID runs of the same setting", headline=FIG6)


def claim_long_context_length_skew_hurts(conds: list[dict], labels: dict[str, str] | None = None,
                                         model_sizes: dict[str, int] | None = None) -> dict:
    """The same effect with texts kept longer than the study's 128 tokens (long context), where a
    length class spans more of a text's real length (nats/token; > 0 supports)."""
    return claim_record(f"with long texts (cut above {STUDY_MAX_LENGTH} tokens), length skew raises "
                        "the global test loss", "cllora, long context",
                        "effect = final global test loss at the smallest length-skew α minus IID's "
                        "(nats/token; > 0 supports)", "", _skew_harm(conds, labels, long_context=True),
                        f"needs length-skew and IID runs of one setting with --max-length above "
                        f"{STUDY_MAX_LENGTH} (e.g. --dataset sotu-chunks --max-length 512)",
                        headline="study-long-context")


def class_harm(skewed: dict, iid: dict) -> dict[int, tuple]:
    """Per length class: (mean, low, high) over seeds of the skewed condition's final class loss
    minus IID's, paired by seed (the planned seeds' complete runs: conditions.verdict_runs)."""
    base = {r["seed"]: r for r in verdict_runs(iid)}
    out = {}
    for c in final_classes(verdict_runs(skewed)):
        key = f"final_class_{c}"
        diffs = [r[key] - base[r["seed"]][key] for r in verdict_runs(skewed)
                 if r["seed"] in base and key in r and key in base[r["seed"]]]
        out[c] = t_interval(diffs)
    return out


def claim_long_texts_hurt_more(conds: list[dict], labels: dict[str, str] | None = None,
                               model_sizes: dict[str, int] | None = None) -> dict:
    """Length skew hurts long texts more than short ones. Harm of a class = its final test loss
    under the smallest length-skew α minus under IID (paired by seed); effect = the longest
    class's harm minus the shortest's (nats/token; > 0 supports)."""
    comparisons = []
    for setting, e, alpha, row, iid in length_pairs(conds):
        classes = sorted(set(final_classes(row.get("runs", []))) & set(final_classes(iid.get("runs", []))))
        if len(classes) < 2:
            continue
        lo, hi = f"final_class_{classes[0]}", f"final_class_{classes[-1]}"
        conds4 = [{"runs": [dict(r, value=r[k]) for r in c.get("runs", []) if k in r]}
                  for c in (row, iid) for k in (hi, lo)]
        est = estimate(conds4, "value", lambda m: (m[0] - m[2]) - (m[1] - m[3]), texts=False)
        harm = class_harm(row, iid)
        detail = "harm per class " + ", ".join(
            f"c{c} {fmt_signed(m)}" + (f" [{fmt_signed(lo_)}, {fmt_signed(hi_)}]" if lo_ is not None else "")
            for c, (m, lo_, hi_) in harm.items())
        if est:
            comparisons.append((f"{setting_name(setting, e, labels)}, α = {alpha:g}", est, detail, e["study"]))
    return claim_record("length skew hurts long texts more than short ones", "cllora",
                        "harm = a length class's final test loss under the smallest length-skew α minus "
                        "under IID; effect = the longest class's harm minus the shortest's "
                        "(nats/token; > 0 supports)", "", comparisons,
                        "needs length-skew and IID runs of the same setting with per-class losses",
                        headline=FIG6)


def _without_replicate(setting: str) -> tuple[str, int]:
    values = setting_values(setting)
    if not values:
        return setting, 0
    replicate = int(values.pop("replicate", 0) or 0)
    return json.dumps(values, sort_keys=True), replicate


def claim_null_replicates(conds: list[dict], labels: dict[str, str] | None = None,
                          model_sizes: dict[str, int] | None = None) -> dict:
    """The null experiment: replicate r of a condition against replicate 0 (same seeds, same data,
    other training randomness) has no true effect, so "they differ" must not come out supported.
    Effect: final loss of replicate r minus replicate 0; *supported* (a false positive) when the
    interval excludes 0 on either side, else inconclusive; never contradicted (no equivalence
    bound is claimed)."""
    groups: dict[tuple, dict[int, dict]] = {}
    for row in conds:
        rest, replicate = _without_replicate(row["setting"])
        groups.setdefault((rest, row["scheme"], row["alpha"]), {})[replicate] = row
    comparisons = []
    for (rest, scheme, alpha), reps in groups.items():
        if 0 not in reps:
            continue
        for r in sorted(k for k in reps if k != 0):
            est = estimate([reps[r], reps[0]], "final_loss", lambda m: m[0] - m[1])
            if not est:
                continue
            differs = est["verdict"] in (SUPPORTED, CONTRADICTED)
            est["verdict"] = SUPPORTED if differs else INCONCLUSIVE
            comparisons.append((f"{model_label(reps[0]['model'])}, {reps[0]['label']}, replicate {r} vs 0",
                                est, f"replicate {r} {fmt_pm(reps[r])} vs replicate 0 {fmt_pm(reps[0])}",
                                True))
    return claim_record("null experiment: replicates that differ only in training randomness differ",
                        "cllora, calibration", "effect = final global test loss of replicate r minus "
                        "replicate 0, same seeds and data; expected inconclusive (supported would be a "
                        "false positive)", "", comparisons,
                        "needs runs of replicate 0 and another replicate (cllora sweep --preset study-null)",
                        headline="study-null/α = 0.1")


OWN_CLAIMS: tuple[Callable[..., dict], ...] = (
    claim_length_skew_hurts,
    claim_long_context_length_skew_hurts,
    claim_long_texts_hurt_more,
    claim_null_replicates,
)
