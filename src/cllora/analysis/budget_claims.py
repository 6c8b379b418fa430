"""The study's claims about the *shape* of its curves (Figs. 6–9), which need its training budget
(10 rounds of up to 5 local epochs) to be testable: non-IID overfits more than IID, α = 0.1
fluctuates more than IID, and the clients' local-model losses approach each other. Each is an
effect per seed (paired by seed) on a per-run measure of `cllora.curves`, with the verdict
machinery of `verdicts` (t-interval over seeds, planned seeds where a plan exists). They are
evaluated at every budget that has the runs; at the quick budget, where the loss keeps falling,
they answer a different question, and the report shows the two side by side.
"""

from __future__ import annotations

from typing import Callable

from cllora.analysis.conditions import experiment_settings, setting_name
from cllora.analysis.own_claims import FIG6
from cllora.analysis.stats import fmt
from cllora.analysis.verdicts import claim_record, estimate, every_one


def _mean_text(rows: list[dict], key: str, digits: int = 4) -> str:
    values = [r[key] for c in rows for r in c["runs"] if isinstance(r.get(key), (int, float))]
    return fmt(sum(values) / len(values), digits) if values else "n/a"


def _skewed(e: dict) -> list[tuple[str, float, dict]]:
    """(scheme, α, condition row) of a setting's skewed conditions, length first then quantity."""
    return [(scheme, a, r) for scheme in ("length", "quantity") for a, r in sorted(e[scheme].items())]


def claim_noniid_overfits_more(conds: list[dict], labels: dict[str, str] | None = None,
                               model_sizes: dict[str, int] | None = None) -> dict:
    """Non-IID training overfits more than IID (study, Figs. 6 and 7: "a trend of overfitting
    becomes apparent in all test curves except for the IID"). Overfitting of a run = its final
    global test loss minus its minimum over rounds (cllora.curves.overfit). Effect per setting:
    each skewed condition's overfitting minus IID's, each α its own paired comparison, supported
    when every one is above IID (verdicts.every_one)."""
    comparisons = []
    for setting, e in experiment_settings(conds, local=False).items():
        skewed = _skewed(e)
        if e["iid"] is None or not skewed:
            continue
        rows = [e["iid"]] + [r for _, _, r in skewed]
        est = every_one(rows, "overfit", lambda i: lambda m: m[i + 1] - m[0], texts=False)
        if est:
            detail = f"IID {_mean_text([e['iid']], 'overfit')}; " + ", ".join(
                f"{s} α = {a:g} {_mean_text([r], 'overfit')}" for s, a, r in skewed)
            comparisons.append((setting_name(setting, e, labels), est, "overfitting (final − best, "
                                "mean over seeds): " + detail, e["study"]))
    return claim_record("non-IID training overfits more than IID", "Figs. 6, 7",
                        "overfitting = final global test loss minus its minimum over rounds; effect = "
                        "each skewed α's overfitting minus IID's, each paired by seed; supported when "
                        "every α overfits more (nats/token; > 0 supports). A curve that only goes up "
                        "and down around a plateau also overfits by this measure (about 0.79 × its "
                        "fluctuation at 10 rounds, cllora.curves.overfit_from_noise): read it beside "
                        "the late trend, the slope over the last half of the rounds", "", comparisons,
                        "needs skewed and IID runs of the same setting", family="intersection-union",
                        headline=("study-length-study", *FIG6))


def claim_alpha01_fluctuates_more(conds: list[dict], labels: dict[str, str] | None = None,
                                  model_sizes: dict[str, int] | None = None) -> dict:
    """At α = 0.1 the global test curve fluctuates more than under IID (study, Figs. 6 and 7: "the
    test curve experiences significant fluctuations at α = 0.1"). Fluctuation of a run = the mean
    absolute second difference of its global test loss over rounds 1..R (cllora.curves). Effect per
    setting and scheme: α = 0.1's fluctuation minus IID's, paired by seed."""
    comparisons = []
    for setting, e in experiment_settings(conds, local=False).items():
        for scheme in ("length", "quantity"):
            row = e[scheme].get(0.1)
            if e["iid"] is None or row is None:
                continue
            est = estimate([row, e["iid"]], "fluctuation", lambda m: m[0] - m[1], texts=False)
            if est:
                comparisons.append((f"{setting_name(setting, e, labels)}, {scheme} skew", est,
                                    f"mean |second difference| of the global test loss: α = 0.1 "
                                    f"{_mean_text([row], 'fluctuation')}, IID {_mean_text([e['iid']], 'fluctuation')}",
                                    e["study"]))
    return claim_record("the global test loss fluctuates more at α = 0.1 than under IID", "Figs. 6, 7",
                        "fluctuation = mean absolute second difference of the global test loss over "
                        "rounds 1..R; effect = α = 0.1's minus IID's, paired by seed, per skew "
                        "(nats/token; > 0 supports)", "", comparisons,
                        "needs α = 0.1 and IID runs of the same setting, evaluated every round",
                        family="intersection-union", headline=("study-length-study", *FIG6))


def claim_local_losses_converge(conds: list[dict], labels: dict[str, str] | None = None,
                                model_sizes: dict[str, int] | None = None) -> dict:
    """Under skew the clients' local test losses start far apart and approach each other (study,
    Figs. 8 and 9: "the starting test loss of different clients has a large gap while gradually
    approaching over time"). Gap of a run = max − min over clients of the local models' loss on
    their own split, in the first and in the last trained round (cllora.curves.local_gap). Effect
    per skewed condition of the local experiment: first gap minus last gap (> 0: converging)."""
    comparisons = []
    for setting, e in experiment_settings(conds, local=True).items():
        if not e["local"]:
            continue
        for scheme, alpha, row in _skewed(e):
            est = estimate([row], "gap_closed", lambda m: m[0], texts=False)
            if est:
                comparisons.append((f"{setting_name(setting, e, labels)}, {scheme} α = {alpha:g}", est,
                                    f"gap between clients' local losses: first round "
                                    f"{_mean_text([row], 'gap_first')}, last {_mean_text([row], 'gap_last')}"
                                    + (f" (IID: {_mean_text([e['iid']], 'gap_first')} → "
                                       f"{_mean_text([e['iid']], 'gap_last')})" if e["iid"] else ""),
                                    e["study"]))
    return claim_record("under skew, the local test losses of the clients start apart and converge", "Figs. 8, 9",
                        "gap = max − min over clients of the local models' own-split test loss; effect "
                        "= gap in the first trained round minus gap in the last, per skewed condition "
                        "of the local experiment, over seeds (nats/token; > 0 supports)", "", comparisons,
                        "needs skewed runs of the local experiment (every client every round)",
                        family="intersection-union", headline=("study-local-study", "study-local"))


BUDGET_CLAIMS: tuple[Callable[..., dict], ...] = (
    claim_noniid_overfits_more,
    claim_alpha01_fluctuates_more,
    claim_local_losses_converge,
)
