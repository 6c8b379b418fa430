"""Client-level differential privacy in the report (pure functions of RunRecords, no drawing): which
runs used DP, each run's final ε, utility against ε, the loss per length class with DP against
without (paired by seed), and clipping by the clients' dominant length class.

Runs are grouped as the rest of the report groups them, with the DP settings taken out of the
setting: a *base setting* is every setting but scheme, alpha, seed and the DP keys; within it a
*condition* is (scheme, alpha) and a *DP level* is the run's DP keys (or "no DP"). Final losses
and clipping come from complete runs only (a run that stopped early would enter with an earlier
round). The numbers are read from rounds.csv: dp_epsilon (∞ for clipping only, no noise),
dp_noise_std, dp_clipped_share[_c<k>], dp_clip_factor_mean / dp_clip_factor_c<k>.
"""

from __future__ import annotations

import json
import math
import re

from cllora.partition.registry import scheme_title, uses_alpha
from cllora.privacy.accountant import default_delta
from cllora.privacy.randomness import noise_source_of
from cllora.analysis.conditions import (
    CONDITION_KEYS,
    class_difference,
    condition_label,
    run_row,
)
from cllora.analysis.setting_names import setting_names, shortest, sweep_label
from cllora.analysis.runs import RunRecord
from cllora.analysis.stats import finite, mean, t_interval

DP_KEYS = ("dp_clip", "dp_noise", "dp_target_epsilon", "dp_delta")
NOISE_FLAG = "dp_seeded_noise_voids_guarantee"  # where the noise came from: compared alike, shown per run
NOISE_LABELS = {"os": "secure (OS randomness)", "seeded": "seeded: simulation, no guarantee"}
NO_DP = "no DP"
CLIP_CLASS_COLUMN = re.compile(r"dp_clipped_share_c(\d+)$")


def condition_name(scheme: str, alpha: float | None) -> str:
    """A condition named with its scheme ("length skew, α = 0.1", "IID"): DP's tables mix schemes."""
    label = condition_label(scheme, alpha)
    return f"{scheme_title(scheme)}, {label}" if uses_alpha(scheme) else label


def uses_dp(config: dict) -> bool:
    """Whether a run used client-level DP (it does when dp_clip is set)."""
    return config.get("dp_clip") is not None


def any_dp(runs: list[RunRecord]) -> bool:
    return any(uses_dp(r.config) for r in runs)


def _number(x) -> bool:
    """A recorded number, ∞ included (finite() leaves ∞ out; ε = ∞ is a value here)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and not math.isnan(x)


def last_value(rounds: list[dict], key: str) -> float | None:
    """The column's value in the last round that recorded one (∞ kept), None where none did."""
    values = [float(r[key]) for r in rounds if _number(r.get(key))]
    return values[-1] if values else None


def final_epsilon(rounds: list[dict]) -> float | None:
    """ε after the last round that recorded one (rounds.csv dp_epsilon; ∞ without noise)."""
    return last_value(rounds, "dp_epsilon")


def base_key(config: dict) -> str:
    """What DP runs are compared within: every setting except scheme, alpha, seed and the DP keys."""
    skip = set(CONDITION_KEYS) | set(DP_KEYS) | {NOISE_FLAG}
    return json.dumps({k: v for k, v in sorted(config.items()) if k not in skip}, sort_keys=True)


def level_key(config: dict) -> str:
    """A run's DP level: its DP settings as JSON, or NO_DP."""
    return json.dumps({k: config.get(k) for k in DP_KEYS}) if uses_dp(config) else NO_DP


def dp_run(rec: RunRecord) -> dict:
    """One run's row (conditions.run_row) with its base setting, DP level and DP numbers: final ε,
    the noise's std on the mean update, C, δ (the config's or the default rule) and z = std·k/C."""
    cfg = rec.config
    row = run_row(rec.name, cfg, rec.rounds, rec.complete)
    dp = uses_dp(cfg)
    std = last_value(rec.rounds, "dp_noise_std") if dp else None
    clip = float(cfg["dp_clip"]) if dp else None
    k = cfg.get("clients_per_round") or 1
    return {**row, "base": base_key(cfg), "dp": dp, "level": level_key(cfg),
            "epsilon": final_epsilon(rec.rounds) if dp else None, "noise_std": std, "clip": clip,
            "noise_multiplier": cfg.get("dp_noise") if cfg.get("dp_noise") is not None
            else (std * k / clip if std is not None and clip else None),
            "target_epsilon": cfg.get("dp_target_epsilon"),
            "noise_source": noise_source_of({**rec.meta, "config": cfg}),
            "delta": (cfg.get("dp_delta") or default_delta(cfg.get("clients") or 1)) if dp else None,
            "rounds_rows": rec.rounds}


def dp_runs(runs: list[RunRecord]) -> list[dict]:
    """dp_run of every run whose base setting holds at least one DP run (others play no part)."""
    rows = [dp_run(r) for r in runs]
    with_dp = {r["base"] for r in rows if r["dp"]}
    return [r for r in rows if r["base"] in with_dp]


def base_labels(runs: list[RunRecord]) -> dict[str, str]:
    """A short name per base setting (setting_names.setting_names without the DP keys)."""
    configs = {base_key(r.config): {k: v for k, v in r.config.items() if k not in DP_KEYS and v is not None}
               for r in runs}
    sweeps: dict[str, set[str]] = {}
    for r in runs:
        sweeps.setdefault(base_key(r.config), set()).add(sweep_label(r))
    return setting_names(configs, {k: shortest(v) for k, v in sweeps.items()})


def _groups(rows: list[dict]) -> dict[tuple, dict[str, list[dict]]]:
    """{(base, scheme, alpha): {level: complete runs}}, in the order the runs came."""
    out: dict[tuple, dict[str, list[dict]]] = {}
    for r in rows:
        if r["complete"]:
            out.setdefault((r["base"], r["scheme"], r["alpha"]), {}).setdefault(r["level"], []).append(r)
    return out


def level_epsilon(group: list[dict]) -> float | None:
    """A DP level's final ε (the same in every seed: it depends on z, k, N, rounds and δ only)."""
    values = [r["epsilon"] for r in group if _number(r["epsilon"])]
    return max(values) if values else None


def _point(group: list[dict], epsilon: float | None) -> dict:
    """Mean final loss over seeds with its 95 % t-interval (stats.t_interval)."""
    m, low, high = t_interval([r["final_loss"] for r in group])
    return {"epsilon": epsilon, "mean": m, "low": low, "high": high,
            "seeds": sorted(r["seed"] for r in group)}


def _eps_order(eps: float | None) -> float:
    return math.inf if eps is None else eps


def utility(runs: list[RunRecord]) -> list[dict]:
    """Utility against ε per base setting: one line per condition, a point per DP level (final ε,
    ∞ for clipping only; mean final global test loss over seeds and its 95 % t-interval), sorted by
    ε, and the condition's runs without DP as a reference point (None where there are none)."""
    labels = base_labels(runs)
    out: dict[str, dict] = {}
    for (base, scheme, alpha), levels in _groups(dp_runs(runs)).items():
        points = [_point(g, level_epsilon(g)) for lvl, g in levels.items() if lvl != NO_DP]
        points = sorted((p for p in points if p["epsilon"] is not None), key=lambda p: _eps_order(p["epsilon"]))
        first = next(iter(levels.values()))[0]
        entry = out.setdefault(base, {"setting": base, "label": labels[base], "model": first["model"], "lines": []})
        entry["lines"].append({"scheme": scheme, "alpha": alpha, "label": condition_name(scheme, alpha),
                               "points": points,
                               "no_dp": _point(levels[NO_DP], None) if NO_DP in levels else None})
    for entry in out.values():  # skewed conditions first, IID last, as in the report's tables
        entry["lines"].sort(key=lambda line: (line["scheme"] == "iid", line["scheme"], line["alpha"] or 0.0))
    return list(out.values())


def class_gaps(runs: list[RunRecord]) -> list[dict]:
    """The final loss per length class with DP minus without, paired by seed (conditions.
    class_difference at the last round both ran): per condition and DP level, against the
    condition's runs without DP, or, where it has none, its clipping-only (ε = ∞) runs. Per class:
    mean difference over the seeds both ran, its 95 % t-interval and their number."""
    labels = base_labels(runs)
    out = []
    for (base, scheme, alpha), levels in _groups(dp_runs(runs)).items():
        baseline, name = _baseline(levels)
        if baseline is None:
            continue
        for level, group in levels.items():
            if level == NO_DP or group is baseline:
                continue
            diff = class_difference({"runs": group}, {"runs": baseline})
            classes = {c: _last(d) for c, d in diff.items() if d["x"]}
            if classes:
                out.append({"setting": base, "label": labels[base], "scheme": scheme, "alpha": alpha,
                            "condition": condition_name(scheme, alpha), "epsilon": level_epsilon(group),
                            "baseline": name, "classes": classes})
    return sorted(out, key=lambda g: (g["setting"], g["scheme"] == "iid", g["scheme"], g["alpha"] or 0.0,
                                      -_eps_order(g["epsilon"])))


def _baseline(levels: dict[str, list[dict]]) -> tuple[list[dict] | None, str]:
    if NO_DP in levels:
        return levels[NO_DP], NO_DP
    for level, group in levels.items():
        if level != NO_DP and level_epsilon(group) == math.inf:
            return group, "ε = ∞ (clipping only)"
    return None, ""


def _last(diff: dict) -> dict:
    """The last round of a mean difference curve: mean, 95 % interval, seeds, round."""
    m, half = diff["mean"][-1], diff["half"][-1]
    n = diff["n"][-1]
    return {"mean": m, "low": m - half if n > 1 else None, "high": m + half if n > 1 else None,
            "n": n, "round": diff["x"][-1]}


def _seed_mean(group: list[dict], key: str) -> tuple[float | None, int]:
    """Mean over seeds of each seed's mean over the rounds that recorded `key`; how many rounds did."""
    per_seed = [mean(r.get(key) for r in run["rounds_rows"]) for run in group]
    rounds = sum(1 for run in group for r in run["rounds_rows"] if finite(r.get(key)))
    return mean(per_seed), rounds


def clip_table(runs: list[RunRecord]) -> list[dict]:
    """Clipping by the clients' dominant length class, one row per condition, DP level and class
    ("all" first): the share of the round's sampled clients that were clipped and their mean clip
    factor min(1, C/‖Δ‖), each averaged over the rounds in which the class had a sampled client,
    then over seeds (each seed weighs the same); `rounds` counts those rounds over all seeds."""
    labels = base_labels(runs)
    out = []
    for (base, scheme, alpha), levels in _groups(dp_runs(runs)).items():
        for level, group in levels.items():
            if level == NO_DP:
                continue
            classes = sorted({int(m.group(1)) for run in group for r in run["rounds_rows"][:1] for k in r
                              if (m := CLIP_CLASS_COLUMN.match(k))})
            head = {"setting": base, "label": labels[base], "condition": condition_name(scheme, alpha),
                    "epsilon": level_epsilon(group), "seeds": len(group)}
            for cls, share_key, factor_key in [("all", "dp_clipped_share", "dp_clip_factor_mean"),
                                               *((c, f"dp_clipped_share_c{c}", f"dp_clip_factor_c{c}")
                                                 for c in classes)]:
                share, rounds = _seed_mean(group, share_key)
                factor, _ = _seed_mean(group, factor_key)
                if rounds:
                    out.append({**head, "class": cls, "clipped_share": share, "clip_factor": factor,
                                "rounds": rounds})
    return out


def run_table(runs: list[RunRecord]) -> list[dict]:
    """Every DP run: its condition, C, z, δ, final ε, the noise's std on the mean update, final loss."""
    labels = base_labels(runs)
    return [{"name": r["name"], "label": labels[r["base"]], "condition": condition_name(r["scheme"], r["alpha"]),
             "seed": r["seed"], "complete": r["complete"], "clip": r["clip"],
             "target_epsilon": r["target_epsilon"], "noise_multiplier": r["noise_multiplier"],
             "delta": r["delta"], "epsilon": r["epsilon"], "noise_std": r["noise_std"],
             "final_loss": r["final_loss"], "noise_source": r["noise_source"]}
            for r in dp_runs(runs) if r["dp"]]


def seeded_share(runs: list[RunRecord]) -> tuple[int, int]:
    """(DP runs whose noise was seeded, DP runs): seeded runs carry no privacy guarantee."""
    table = run_table(runs)
    return sum(r["noise_source"] == "seeded" for r in table), len(table)


def fmt_epsilon(eps: float | None) -> str:
    """ε as text: "∞", "7.98", "—"."""
    if eps is None:
        return "—"
    return "∞" if math.isinf(eps) else f"{eps:.3g}"

