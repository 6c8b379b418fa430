"""Federated strategies side by side (pure functions of run records): for runs that differ only in
`strategy` and its options, one row per strategy and condition (scheme, alpha) with the final and
best global loss (mean over seeds ± the half-width of the 95 % t-interval), final fairness, client
drift and bytes; and the per-round curves (global loss, aggregation error, drift) of each strategy,
mean over seeds, for the report's strategy figures. Each strategy's final loss is compared with
FedAvg's as every claim is (cllora.analysis.stats.compare), on the sweep's planned seeds (seeds
beyond its plan give an `extension` estimate, no verdict), and the verdicts are corrected with
Holm's step-down procedure per base setting (family-wise error ≤ 5 % over that setting's own
comparisons: another sweep in the same folder never changes them).
"""

from __future__ import annotations

import json

import numpy as np

from cllora.aggregate import STRATEGIES, strategy_option_names
from cllora.config.settings import RunConfig
from cllora.partition.registry import uses_alpha
from cllora.analysis.conditions import CONDITION_KEYS, condition_label, final_texts
from cllora.analysis.fairness import fairness_fields
from cllora.analysis.runs import RunRecord
from cllora.analysis.stats import compare, curve, finite, mean, t_half_width
from cllora.analysis.plans import EXTENSION
from cllora.analysis.verdicts import holm_verdicts

BASELINE = "fedavg"


def strategy_keys() -> tuple[str, ...]:
    """The config keys a strategy comparison varies: the strategy and every strategy option."""
    return ("strategy", *strategy_option_names())


def base_setting(config: dict) -> str:
    """What strategies are compared within: every setting but scheme, alpha, seed and the strategy's."""
    skip = set(CONDITION_KEYS) | set(strategy_keys())
    return json.dumps({k: v for k, v in sorted(config.items()) if k not in skip}, sort_keys=True)


def strategy_label(config: dict) -> str:
    """The strategy and any option set away from the default, e.g. "fedprox (prox_mu=0.1)"."""

    defaults = RunConfig()
    changed = [f"{k}={config[k]:g}" for k in strategy_option_names()
               if isinstance(config.get(k), (int, float)) and config[k] != getattr(defaults, k)]
    name = config.get("strategy", "fedavg")
    return name + (f" ({', '.join(changed)})" if changed else "")


def _run_numbers(run: RunRecord) -> dict:
    losses = curve(run.rounds, "global_test_loss")
    trained = [r for r in run.rounds if r.get("round", 0) >= 1]
    return {"final": losses[-1][1] if losses else None, "best": min((v for _, v in losses), default=None),
            "fairness": (curve(run.rounds, "fairness_var") or [(None, None)])[-1][1],
            "fairness_clients": fairness_fields(run.config, run.meta, run.rounds, run.clients, None)["fairness_clients"],
            "drift": mean(r.get("drift_mean") for r in trained),
            "pairwise": mean(r.get("drift_pairwise") for r in trained),
            "agg_error": mean(r.get("agg_error") for r in trained),
            "bytes": run.rounds[-1].get("bytes_cumulative") if run.rounds else None}


def _summary(values: list) -> tuple[float | None, float | None]:
    """(mean, 95 % t half-width) of the finite values; (None, None) without any."""
    vals = np.asarray([v for v in values if finite(v)], dtype=float)
    return (float(vals.mean()), t_half_width(vals)) if len(vals) else (None, None)


def _comparisons(runs: list[RunRecord]) -> dict[tuple, dict[str, list[RunRecord]]]:
    """{(base setting, scheme, alpha): {strategy label: runs}} where at least two strategies ran."""
    groups: dict[tuple, dict[str, list[RunRecord]]] = {}
    for run in runs:
        cfg = run.config
        alpha = float(cfg["alpha"]) if uses_alpha(cfg["scheme"]) else None
        key = (base_setting(cfg), cfg["scheme"], alpha)
        groups.setdefault(key, {}).setdefault(strategy_label(cfg), []).append(run)
    return {key: by_strategy for key, by_strategy in groups.items() if len(by_strategy) >= 2}


def strategy_rows(runs: list[RunRecord]) -> list[dict]:
    """One row per (base setting, scheme, alpha, strategy label), for the base settings and
    conditions that ran at least two strategies; seeds are averaged."""
    out = []
    for (setting, scheme, alpha), by_strategy in _comparisons(runs).items():
        baseline = by_strategy.get(BASELINE)
        for label, members in by_strategy.items():
            numbers = [_run_numbers(r) for r in members]
            final, final_hw = _summary([n["final"] for n in numbers])
            out.append({"setting": setting, "model": members[0].config["model"], "scheme": scheme,
                        "alpha": alpha, "condition": condition_label(scheme, alpha), "strategy": label,
                        "seeds": len(members), "complete": all(r.complete for r in members),
                        "final_loss": final, "final_loss_hw": final_hw,
                        "vs_baseline": None if baseline is None or label == BASELINE
                        else versus(members, baseline),
                        "clients": members[0].config.get("clients"),
                        **{k: mean(n[k] for n in numbers) for k in ("best", "fairness", "fairness_clients",
                                                                   "drift", "pairwise", "agg_error", "bytes")}})
    for family in {r["setting"] for r in out}:  # Holm per base setting: its own table, whatever else ran
        holm_verdicts([r["vs_baseline"] for r in out if r["vs_baseline"] and r["setting"] == family])
    return sorted(out, key=lambda r: (r["setting"], r["scheme"] == "iid", r["scheme"], r["alpha"] or 0.0,
                                      r["final_loss"] if finite(r["final_loss"]) else float("inf")))


def _by_seed(members: list[RunRecord]) -> tuple[dict[int, float], dict]:
    """Each seed's final global loss and final per-text losses (None where a run lacks them)."""
    finals, texts = {}, {}
    for run in members:
        if not run.complete or not run.planned:
            continue  # shown in the table (an extension's seeds in its own estimate), never in a verdict
        losses = curve(run.rounds, "global_test_loss")
        if losses:
            seed = int(run.config.get("seed", 0))
            finals[seed] = losses[-1][1]
            texts[seed] = final_texts(run.test_losses, losses[-1][0])
    return finals, ({s: t for s, t in texts.items() if t is not None} if all(
        t is not None for t in texts.values()) else {})


def versus(members: list[RunRecord], baseline: list[RunRecord]) -> dict | None:
    """Final global loss of a strategy minus FedAvg's, paired by seed (and by test text): effect,
    95 % interval and method as every other comparison of the report (cllora.analysis.stats)."""
    (finals, texts), (base_finals, base_texts) = _by_seed(members), _by_seed(baseline)
    est = compare([finals, base_finals], lambda m: m[0] - m[1],
                  [texts, base_texts] if texts and base_texts else None)
    every = [{int(r.config.get("seed", 0)): curve(r.rounds, "global_test_loss")[-1][1] for r in runs
              if r.complete and curve(r.rounds, "global_test_loss")} for runs in (members, baseline)]
    if est is not None:
        ext = compare(every, lambda m: m[0] - m[1]) if len(set(every[0]) & set(every[1])) > est["seeds"] else None
        est["extension"] = ext and {"label": EXTENSION, **{k: ext[k] for k in ("seeds", "effect", "low", "high")}}
    return est


CURVE_KEYS = ("global_test_loss", "agg_error", "drift_mean")


def _mean_curve(members: list[RunRecord], key: str) -> list[tuple[int, float]]:
    """(round, mean over the runs that have that round) of one rounds.csv column."""
    by_round: dict[int, list[float]] = {}
    for run in members:
        for r, v in curve(run.rounds, key):
            by_round.setdefault(r, []).append(v)
    return [(r, float(np.mean(v))) for r, v in sorted(by_round.items())]


def _registry_order(item: tuple[str, list[RunRecord]]) -> tuple[int, str]:
    """FedAvg first, then the registry's order (cllora.aggregate), then the label."""

    names = list(STRATEGIES)
    name = item[1][0].config.get("strategy", "fedavg")
    return (names.index(name) if name in names else len(names), item[0])


def strategy_curves(runs: list[RunRecord]) -> list[dict]:
    """Per base setting, per condition (length, quantity, then IID): each strategy's mean curve of
    every CURVE_KEYS column. [{setting, model, conditions: [{scheme, alpha, condition, curves:
    {strategy: {key: [(round, value)]}}}]}]"""
    settings: dict[str, dict] = {}
    for (setting, scheme, alpha), by_strategy in _comparisons(runs).items():
        entry = settings.setdefault(setting, {"setting": setting, "conditions": [],
                                              "model": next(iter(by_strategy.values()))[0].config["model"]})
        entry["conditions"].append({
            "scheme": scheme, "alpha": alpha, "condition": condition_label(scheme, alpha),
            "curves": {label: {k: _mean_curve(members, k) for k in CURVE_KEYS}
                       for label, members in sorted(by_strategy.items(), key=_registry_order)}})
    for entry in settings.values():
        entry["conditions"].sort(key=lambda c: (c["scheme"] == "iid", c["scheme"], c["alpha"] or 0.0))
    return list(settings.values())
