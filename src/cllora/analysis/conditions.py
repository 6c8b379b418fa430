"""Runs as rows (pure functions of dicts): per-run headline numbers, conditions as seeds of the
same (setting, scheme, alpha) with their curves averaged, settings and their labels, which
settings are the study's own (and which long-context). The cost table is `costs`. A *setting* is everything a run is compared within (model, clients, rounds, ...); a *condition*
within it is (scheme, alpha); seeds are repetitions of a condition.
"""

from __future__ import annotations

import json
import re

import numpy as np

from cllora import curves
from cllora.partition.registry import scheme_title, uses_alpha
from cllora.records import reported
from cllora.analysis.plans import Sweep, run_fields
from cllora.analysis.stats import Texts, curve, finite, mean, mean_std_curve, relative_range, short, t_interval

CONDITION_KEYS = ("scheme", "alpha", "seed")
CLASS_COLUMN = re.compile(r"test_loss_c(\d+)$")


# ---------------------------------------------------------------- settings and labels

ABSENT_WHEN_FALSE = ("dp_seeded_noise_voids_guarantee", "secagg")  # flags added later whose default is off


def setting_key(config: dict) -> str:
    """What a run is compared within: every setting except scheme, alpha and seed. A setting that
    is None counts as absent, so runs written before a new option existed (no key) pair with runs
    that record it at its default None (`"dp_clip": null`); so does a later flag left off."""
    return json.dumps({k: v for k, v in sorted(present(config).items()) if k not in CONDITION_KEYS}, sort_keys=True)


def present(config: dict) -> dict:
    """The settings a run has: without those at None or, for flags added later, at their default
    False, so older runs (no key) read the same as newer ones that record the default."""
    return {k: v for k, v in config.items() if v is not None and not (k in ABSENT_WHEN_FALSE and v is False)}


def model_label(name: str) -> str:
    base = str(name).rstrip("/").rsplit("/", 1)[-1]
    return base or str(name)


def setting_labels(configs: dict[str, dict]) -> dict[str, str]:
    """A short title per setting: the model, plus the settings that differ between settings of
    the same model (e.g. "smollm2-135m, local_epochs=2")."""
    by_model: dict[str, list[str]] = {}
    for key, cfg in configs.items():
        by_model.setdefault(cfg["model"], []).append(key)
    labels = {}
    for model, keys in by_model.items():
        names = dict.fromkeys(k for s in keys for k in configs[s])  # every run's keys, also newer ones
        varying = [k for k in names
                   if k not in CONDITION_KEYS and len({json.dumps(configs[s].get(k)) for s in keys}) > 1]
        for key in keys:
            extra = ", ".join(f"{k}={short(configs[key].get(k))}" for k in varying)
            labels[key] = model_label(model) + (f", {extra}" if extra else "")
    return labels


def condition_label(scheme: str, alpha: float | None, with_scheme: bool = False) -> str:
    """"IID", "natural clients" or "α = 0.1" ("length α = 0.1" `with_scheme`, where length and
    quantity skew at one α sit side by side)."""
    return {"iid": "IID", "natural": "natural clients"}.get(scheme) or \
        (f"{scheme} " if with_scheme else "") + f"α = {alpha:g}"


# ---------------------------------------------------------------- runs and conditions

def final_texts(test_losses: dict | None, last_round: int) -> Texts | None:
    """(text_index, tokens, loss) of the final round's per-text test losses; None without them or
    when they are of another round than rounds.csv's last evaluated one (a run still going)."""
    if not test_losses or int(test_losses.get("final_round", last_round)) != last_round:
        return None
    return (np.asarray(test_losses["text_index"]), np.asarray(test_losses["tokens"]),
            np.asarray(test_losses["loss_final"], dtype=float))


def last_evaluated(rounds: list[dict]) -> tuple[int | None, float | None]:
    """(round, loss) of the last evaluated round, the loss as recorded even when not finite."""
    for row in reversed(rounds):
        loss = row.get("global_test_loss")
        if isinstance(loss, (int, float)) and not isinstance(loss, bool):
            return int(row["round"]), float(loss)
    return None, None


def class_curves(rounds: list[dict]) -> dict[int, list[tuple[int, float]]]:
    """{length class: (round, loss)} from the test_loss_c<k> columns that hold values."""
    classes = sorted({int(m.group(1)) for r in rounds[:1] for k in r if (m := CLASS_COLUMN.match(k))})
    out = {c: curve(rounds, f"test_loss_c{c}") for c in classes}
    return {c: points for c, points in out.items() if points}


def run_row(name: str, config: dict, rounds: list[dict], complete: bool | None = None,
            test_losses: dict | None = None, clients: list[dict] | None = None,
            sweep: Sweep | None = None) -> dict:
    """One run's headline numbers from its config and rounds.csv rows (and test_losses.npz,
    clients.csv), with the last value of each column the column table marks for the report
    (final_<name>), and its sweep's name, budget and plan (plans.run_fields).

    local_loss = mean over trained rounds of the local models' test loss on their own split;
    local_spread = mean over trained rounds of the variance of that loss across the round's clients;
    overfit, fluctuation, late_trend and the local gap (gap_first, gap_last, gap_closed) as
    cllora.curves defines them.
    """
    losses = curve(rounds, "global_test_loss")
    best_round, best = min(losses, key=lambda p: p[1]) if losses else (None, None)
    trained = [r for r in rounds if r.get("round", 0) >= 1]
    final_round, final = last_evaluated(rounds)  # a diverged final round is inf/NaN, never an earlier one
    last = final_round or 0
    return {
        "name": name, "model": config["model"], "setting": setting_key(config),
        "scheme": config["scheme"], "alpha": float(config["alpha"]) if uses_alpha(config["scheme"]) else None,
        "seed": config.get("seed", 0), "rounds_planned": config.get("rounds"),
        **run_fields(sweep, config.get("seed", 0)),
        "rounds_completed": last,
        "complete": (last >= (config.get("rounds") or 0)) if complete is None else complete,
        "initial_loss": losses[0][1] if losses and losses[0][0] == 0 else None,
        "final_loss": final,
        "best_loss": best, "best_round": best_round,
        "overfit": curves.overfit(losses)[0] if losses else None,
        "fluctuation": curves.fluctuation(losses), "late_trend": curves.late_trend(losses),
        **{k: v for k, v in curves.local_gap(clients or []).items() if k.startswith("gap_")},
        **{f"final_{c.name}": (curve(rounds, c.name) or [(None, None)])[-1][1] for c in reported("final")},
        "local_loss": mean(r.get("local_models_test_loss_mean") for r in trained),
        "local_spread": mean(r.get("local_models_var") for r in trained),
        "local_spread_corrected": mean(r.get("local_models_var_corrected") for r in trained),
        "total_bytes": (rounds[-1].get("bytes_cumulative") if rounds else None),
        "seconds": sum((r.get("round_seconds") or 0.0) for r in rounds),
        "curve": losses, "change_curve": curves.since_start(losses),
        "fairness_curve": curve(rounds, "fairness_var_corrected"),
        "class_curves": class_curves(rounds), "texts": final_texts(test_losses, last),
        **{f"final_class_{c}": points[-1][1] for c, points in class_curves(rounds).items()
           if points[-1][0] == last},
    }


def condition_rows(rows: list[dict]) -> list[dict]:
    """Runs grouped by (setting, scheme, alpha): means (and std of the final loss) over seeds.
    best_loss / best_round come from the seed-mean curve: the round where the averaged loss is
    lowest, after which the averaged curve rises (overfitting begins) unless it is the last.
    """
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["setting"], row["scheme"], row["alpha"]), []).append(row)
    return sorted((_condition(setting, scheme, alpha, runs)
                   for (setting, scheme, alpha), runs in groups.items()), key=_condition_order)


def _condition(setting: str, scheme: str, alpha: float | None, runs: list[dict]) -> dict:
    losses = mean_std_curve([r["curve"] for r in runs])
    best_i = int(np.argmin(losses["mean"])) if losses["x"] else None
    finals = [r["final_loss"] for r in runs if finite(r["final_loss"])]
    diverged = [r["final_loss"] for r in runs if isinstance(r["final_loss"], float) and not finite(r["final_loss"])]
    # a seed whose final round is not finite makes the condition's final loss not finite too
    classes = sorted({c for r in runs for c in r["class_curves"]})
    return {
        "setting": setting, "model": runs[0]["model"], "scheme": scheme, "alpha": alpha,
        "label": condition_label(scheme, alpha), "seeds": sorted(r["seed"] for r in runs),
        "n_seeds": len(runs), "complete": all(r["complete"] for r in runs), "runs": runs,
        "initial_loss": mean(r["initial_loss"] for r in runs),
        "final_loss": diverged[0] if diverged else mean(finals),
        "final_loss_std": float(np.std(finals, ddof=1)) if len(finals) > 1 and not diverged else None,
        "best_loss": losses["mean"][best_i] if best_i is not None else None,
        "best_round": losses["x"][best_i] if best_i is not None else None,
        "last_round": losses["x"][-1] if losses["x"] else None,
        "late_trend": dict(zip(("effect", "low", "high"), t_interval([r["late_trend"] for r in runs]))),
        **{f"final_{c.name}": mean(r[f"final_{c.name}"] for r in runs) for c in reported("final")},
        "local_loss": mean(r["local_loss"] for r in runs),
        "local_spread": mean(r["local_spread"] for r in runs),
        "local_spread_corrected": mean(r["local_spread_corrected"] for r in runs),
        "curve": losses, "change_curve": mean_std_curve([r["change_curve"] for r in runs]),
        "fairness_curve": mean_std_curve([r["fairness_curve"] for r in runs]),
        "class_curves": {c: mean_std_curve([r["class_curves"].get(c, []) for r in runs]) for c in classes},
    }


def _condition_order(row: dict) -> tuple:
    return (row["setting"], row["scheme"] == "iid", row["scheme"], row["alpha"] or 0.0)


def class_difference(skewed: dict, iid: dict) -> dict[int, dict]:
    """Per length class: the skewed condition's loss minus IID's per round, paired by seed, as a
    mean curve over the seeds both ran (with its 95 % band; stats.mean_std_curve)."""
    iid_runs = {r["seed"]: r["class_curves"] for r in iid.get("runs", [])}
    out: dict[int, list] = {}
    for run in skewed.get("runs", []):
        other = iid_runs.get(run["seed"])
        for c, points in (run["class_curves"].items() if other is not None else ()):
            base = dict(other.get(c, []))
            out.setdefault(c, []).append([(x, y - base[x]) for x, y in points if x in base])
    return {c: mean_std_curve(curves) for c, curves in sorted(out.items())}


def complete_runs(cond: dict) -> list[dict]:
    """A condition's runs that reached their planned rounds: the only ones any verdict or spread
    uses (a run that stopped early would enter with its last evaluated round; the report shows it,
    marked)."""
    return [r for r in cond.get("runs", []) if r.get("complete", True)]


def final_classes(runs: list[dict]) -> list[int]:
    """The length classes whose final loss (final_class_<k>) some of these runs recorded."""
    return sorted({int(k.rsplit("_", 1)[1]) for r in runs for k in r if k.startswith("final_class_")})


def verdict_runs(cond: dict, extension: bool = False) -> list[dict]:
    """The complete runs a verdict uses: those of planned seeds (plans.run_fields; every seed of a
    sweep without a plan); with `extension`, every complete run (an extension's estimate)."""
    return [r for r in complete_runs(cond) if extension or r.get("planned", True)]


def seed_values(conds: list[dict], key: str, extension: bool = False) -> list[dict[int, float]]:
    """Each condition's `key` per seed (verdict_runs), for stats.compare."""
    return [{r["seed"]: r[key] for r in verdict_runs(c, extension) if finite(r.get(key))} for c in conds]


def seed_texts(conds: list[dict]) -> list[dict[int, Texts]]:
    """Each condition's per-text final test losses per seed (verdict_runs that have them)."""
    return [{r["seed"]: r["texts"] for r in verdict_runs(c) if r.get("texts") is not None} for c in conds]


def setting_name(setting: str, entry: dict, labels: dict[str, str] | None) -> str:
    """A setting's title in a claim: its label, else its model's."""
    return (labels or {}).get(setting, model_label(entry["model"]))


# the study's own settings, where a study claim is decided: FedAvg, replicate 0, no differential
# privacy, and no natural clients (cllora's natural-client experiment has its own fitted alpha)
STUDY_SETTING = {"strategy": "fedavg", "replicate": 0, "dp_clip": None, "client_key": None}


def setting_values(setting: str) -> dict:
    """The settings a setting key (setting_key's JSON) holds; {} for a bare label."""
    try:
        values = json.loads(setting)
    except ValueError:
        return {}
    return values if isinstance(values, dict) else {}


def is_study_setting(setting: str) -> bool:
    """Whether a setting is the study's own (STUDY_SETTING): only these decide its claims."""
    values = setting_values(setting)
    return all(values.get(k, v) == v for k, v in STUDY_SETTING.items())


STUDY_MAX_LENGTH = 128  # tokens: the study cut its texts here; a setting that cuts later is long-context


def is_long_context(setting: str) -> bool:
    """Whether a setting keeps texts longer than the study's cut (STUDY_MAX_LENGTH tokens)."""
    return (setting_values(setting).get("max_length") or 0) > STUDY_MAX_LENGTH


def seed_spread(conds: list[dict]) -> list[dict]:
    """Per condition with at least 2 complete seeds: the sample sd over seeds of the final global
    loss, of each length class's final loss and of the final noise-corrected fairness, the
    training-and-sampling noise every comparison of that condition carries."""
    out = []
    for c in conds:
        runs = complete_runs(c)
        if len(runs) < 2:
            continue

        def sd(key: str) -> float | None:
            vals = [r[key] for r in runs if finite(r.get(key))]
            return float(np.std(vals, ddof=1)) if len(vals) >= 2 else None
        classes = final_classes(runs)
        label = scheme_title(c["scheme"]) + ("" if c["alpha"] is None else f", α = {c['alpha']:g}")
        out.append({"setting": c["setting"], "model": c["model"], "label": label, "seeds": len(runs),
                    "final_loss_sd": sd("final_loss"), "fairness_corrected_sd": sd("final_fairness_var_corrected"),
                    "class_sd": {k: sd(f"final_class_{k}") for k in classes}})
    return out


def is_local_experiment(setting: str) -> bool | None:
    """Whether a setting trains every client every round (the study's local experiment, Figs. 8
    and 9) rather than sampling a few (its global experiments, Figs. 6 and 7); None if unknown."""
    values = setting_values(setting)
    if "clients" not in values or "clients_per_round" not in values:
        return None
    return values["clients_per_round"] >= values["clients"]


def experiment_settings(conds: list[dict], local: bool) -> dict[str, dict]:
    """by_setting, narrowed to the study's local experiments (local=True) or its global ones
    (local=False) where there are any of that kind: a claim about one experiment is decided on
    that experiment's settings, and on every setting only where none is of its kind."""
    entries = by_setting(conds)
    kind = {k: e for k, e in entries.items() if e["local"] is local}
    return kind or entries


def by_setting(conds: list[dict]) -> dict[str, dict]:
    """{setting: {"model": name, "iid": row | None, "length": {alpha: row}, "quantity": {alpha: row}}}."""
    out: dict[str, dict] = {}
    for row in conds:
        entry = out.setdefault(row["setting"], {"iid": None, "length": {}, "quantity": {},
                                                "model": row["model"],
                                                "study": is_study_setting(row["setting"]),
                                                "local": is_local_experiment(row["setting"])})
        if row["scheme"] == "iid":
            entry["iid"] = row
        elif uses_alpha(row["scheme"]):  # natural clients take part in no claim of the study
            entry[row["scheme"]][row["alpha"]] = row
    return out


def length_pairs(conds: list[dict], local: bool = False):
    """(setting, entry, α, length-skew row, IID row) per setting that ran IID and length skew, at
    its smallest length-skew α, of the global experiments (or the local ones: `local`)."""
    for setting, e in experiment_settings(conds, local).items():
        if e["iid"] is not None and e["length"]:
            alpha = min(e["length"])
            yield setting, e, alpha, e["length"][alpha], e["iid"]


def overfit_note(row: dict, tolerance: float = 0.002) -> str:
    """'after round k' if the seed-mean curve is lowest before its last round by more than
    `tolerance` (relative), else '—' (still improving or flat at the end)."""
    best, final, rnd, last = row["best_loss"], row["final_loss"], row["best_round"], row["last_round"]
    if not all(finite(v) for v in (best, final)) or rnd is None or rnd == last:
        return "—"
    return f"after round {rnd}" if final - best > tolerance * abs(best) else "—"


def length_rows(entry: dict) -> list[dict]:
    """A setting's length-skew conditions (by α) and IID: what length sensitivity is taken over."""
    return [r for _, r in sorted(entry["length"].items())] + ([entry["iid"]] if entry["iid"] else [])


def length_sensitivity(entry: dict) -> float | None:
    """Spread of the final global loss over length-skew α values and IID, relative to their mean."""
    finals = [r["final_loss"] for r in length_rows(entry) if finite(r["final_loss"])]
    if len(finals) < 2 or not entry["length"]:
        return None
    return float(relative_range(finals))
