"""The report's figures: the registry of figure drawers the report runs in order
(`REPORT_FIGURES`), which comparisons each draws, with their titles and captions, each saved as
PNG and SVG in DIR/figures into a section of the page, and the run pairs of the per-client
figures (drawing itself lives in cllora.report.figures)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from cllora.files import slug
from cllora.partition.registry import scheme_title, uses_alpha
from cllora.records import save_figure
from cllora.report.axes import class_labels
from cllora.analysis.conditions import (
    by_setting,
    class_difference,
    is_local_experiment,
    is_long_context,
    is_study_setting,
    model_label,
    setting_key,
)
from cllora.analysis.budget_figures import CHANGE_LABEL
from cllora.report.forest import forest_figure
from cllora.report.figures import (
    class_loss_figure,
    client_pair_figure,
    comparison_figure,
    privacy_figure,
    strategy_figure,
)
from cllora.analysis.privacy import base_key, class_gaps, utility
from cllora.report.run_figures import client_curves, partition_figure
from cllora.analysis.runs import RunRecord
from cllora.analysis.strategies import strategy_curves

BAND = " Bands: 95 % t-interval of the mean over seeds."
FAIRNESS_LABEL = "variance across clients, noise-corrected (nats²)"
# the page's figure sections (cllora.report.html places each)
SECTIONS = ("claims", "global", "classes", "fairness", "local", "partition", "strategies", "privacy")


def local_comparison(runs: list[RunRecord]) -> list[dict]:
    """Pairs for the local-training figures (Figs. 8/9): per setting and skew scheme, the run at
    the smallest α and the IID run (first seed of each)."""
    settings: dict[str, dict] = {}
    for rec in sorted(runs, key=lambda r: r.config.get("seed", 0)):
        e = settings.setdefault(setting_key(rec.config), {"iid": None, "length": {}, "quantity": {}})
        scheme = rec.config["scheme"]
        if scheme == "iid":
            e["iid"] = e["iid"] or rec
        elif uses_alpha(scheme):
            e[scheme].setdefault(float(rec.config["alpha"]), rec)
    pairs = []
    for setting, e in settings.items():
        for scheme in ("length", "quantity"):
            if e[scheme]:
                alpha = min(e[scheme])
                pairs.append({"setting": setting, "scheme": scheme, "alpha": alpha,
                              "skewed": e[scheme][alpha], "iid": e["iid"]})
    return pairs


def local_key(config: dict) -> str:
    """Which per-client loss to draw: the local models' own (dense when most clients train each
    round, as in the study's local experiment), else the global model on each client's split."""
    if config.get("clients_per_round", 1) * 2 >= config.get("clients", 1):
        return "local_model_test_loss"
    return "global_model_local_test_loss"


@dataclass
class Figure:
    """One saved figure of the report: its section anchor key, title, caption and files."""

    key: str
    title: str
    caption: str
    png: Path
    svg: Path


@dataclass(frozen=True)
class FigureInputs:
    """What a report figure is drawn from: the runs, their conditions and the settings' labels
    (cllora.analysis.conditions), and where to say that a figure failed."""

    runs: list[RunRecord]
    conds: list[dict]
    labels: dict[str, str]  # each setting's name (cllora.analysis.setting_names)
    log: Callable[[str], None] = print
    claims: tuple = ()  # the claim records (claims.json's "claims")
    rename: Callable[[str], str] = str  # a claim record's setting label -> the setting's name


Save = Callable[[str, str, Any, str, str], None]  # save(section, key, matplotlib figure, title, caption)

# Every figure of the report, drawn in this order: draw(inputs, save) saves none, one or several.
REPORT_FIGURES: dict[str, Callable[[FigureInputs, Save], None]] = {
    "claims": lambda d, save: _draw_claims(d.claims, d.rename, save),  # the forest plot
    "global": lambda d, save: _draw_global(d.conds, d.labels, save),  # global loss and fairness
    "classes": lambda d, save: _draw_classes(d.conds, d.runs, d.labels, save),
    "local": lambda d, save: _draw_local(d.runs, d.labels, save),
    "strategies": lambda d, save: _draw_strategies(d.runs, save),
    "privacy": lambda d, save: _draw_privacy(d.runs, save),
    "partitions": lambda d, save: _draw_partitions(d.runs, save, d.log),
}


def draw_figures(root: Path, runs: list[RunRecord], conds: list[dict], labels: dict[str, str],
                 log: Callable[[str], None] = print, claims: list[dict] = (),
                 rename: Callable[[str], str] = str) -> dict[str, list[Figure]]:
    """Every figure of REPORT_FIGURES, saved as PNG and SVG in root/figures; grouped by section.
    `labels` names each setting; `claims` and `rename` (a claim's setting label to its short name,
    setting_names' `short`) feed the forest plot."""
    fig_dir = root / "figures"
    fig_dir.mkdir(exist_ok=True)
    out: dict[str, list[Figure]] = {section: [] for section in SECTIONS}

    def save(section: str, key: str, fig, title: str, caption: str) -> None:
        if section not in out:
            raise ValueError(f"figure {key!r}: section must be one of {', '.join(SECTIONS)}, got {section!r}")
        png, svg = fig_dir / f"{key}.png", fig_dir / f"{key}.svg"
        save_figure(fig, png, svg, dpi=130)
        out[section].append(Figure(key, title, caption, png, svg))

    inputs = FigureInputs(runs, conds, labels, log, tuple(claims), rename)
    for draw in REPORT_FIGURES.values():
        draw(inputs, save)
    return out


def _draw_claims(claims, rename: Callable[[str], str], save: Save) -> None:
    """Every claim at a glance: effect, 95 % interval and boundary per claim and setting."""
    fig = forest_figure(list(claims), rename)
    if fig is None:
        return
    untested = [c["claim"] for c in claims if not any(x.get("effect") is not None for x in c["comparisons"])]
    save("claims", "claims_forest", fig, "Every claim: effect and 95 % interval per setting",
         "A panel per claim on its own axis, a row per deciding setting and its seeds; thin grey "
         "lines: settings shown that do not decide (named in each claim's evidence below)."
         + (f" Not testable on these runs: {'; '.join(untested)}." if untested else ""))


def _draw_partitions(runs: list[RunRecord], save: Save, log: Callable[[str], None]) -> None:
    """Each run's partition: examples per length class per client."""
    for rec in runs:
        if rec.partition is None:
            continue
        try:
            fig = partition_figure(rec.partition)
        except Exception as exc:  # a figure must not stop the report
            log(f"partition plot of {rec.name} failed: {exc}")
            continue
        save("partition", f"partition_{slug(rec.name)}", fig, f"Partition: {rec.name}",
             _partition_caption(rec.partition))


def in_study_figure(setting: str) -> bool:
    """Whether a setting's global curves belong under the study's Figs. 6 and 7: the study's own
    setting (FedAvg, replicate 0, no DP, no natural clients), sampling a few clients a round, at the
    study's text length."""
    return is_study_setting(setting) and is_local_experiment(setting) is not True and not is_long_context(setting)


def _draw_global(conds: list[dict], labels: dict[str, str], save) -> None:
    """Global loss and fairness per round: a figure per skew scheme, a panel per setting; the
    study's figure holds only the settings that belong to it (in_study_figure), the others come
    in a figure of their own."""
    settings = list(dict.fromkeys(c["setting"] for c in conds))
    schemes = [s for s in ("length", "quantity") if any(c["scheme"] == s for c in conds)] or ["iid"]
    band = BAND if max((c["n_seeds"] for c in conds), default=1) > 1 else ""
    study = [s for s in settings if in_study_figure(s)]
    others = [s for s in settings if s not in study]
    groups = [(study, ""), (others, "other" if study else "")]  # with no study setting, no "other"
    for scheme in schemes:
        for chosen, suffix in groups:
            panels = _panels(conds, chosen, labels, scheme, "change_curve")
            if not panels:
                continue
            short = {"length": "length skew", "quantity": "quantity skew", "iid": "IID"}[scheme]
            fig_no = {"length": " (the study's Fig. 6)", "quantity": " (the study's Fig. 7)"}.get(scheme, "")
            what = f"{short}, other settings" if suffix else short + (fig_no if chosen is study else "")
            key = f"_{suffix}" if suffix else ""
            save("global", f"global_loss_{scheme}{key}",
                 comparison_figure(panels, f"Global test loss per round, {what}", CHANGE_LABEL),
                 f"Global test loss, {what}",
                 f"Test loss of the aggregated model on the held-out test set after each round, minus "
                 f"its loss before training (round 0): each seed draws its own test texts, whose level "
                 f"differs from seed to seed, and the change leaves that sampling noise out of the "
                 f"curves and bands (the levels are in the tables). One panel per setting, one curve "
                 f"per α and IID.{band}"
                 + ("" if chosen is study else " Settings that are not the study's own global experiment "
                    "(other strategies, replicates, DP, natural clients, every client a round, longer texts)."))
            save("fairness", f"fairness_{scheme}{key}",
                 comparison_figure(_panels(conds, chosen, labels, scheme, "fairness_curve"),
                                   f"Fairness per round, {what.split(' (')[0]}", FAIRNESS_LABEL),
                 f"Fairness, {what.split(' (')[0]}",
                 "Variance across all clients of the global model's test loss on each client's own "
                 "test split, minus what the splits' sampling noise adds to it (noise-corrected, "
                 "rounds.csv's fairness_var_corrected, not floored: it can fall below 0, so the axis "
                 "is linear; lower is fairer). Runs before this version used the legacy standard "
                 "errors, biased upwards (see the fairness table)." + band)


def _draw_classes(conds: list[dict], runs: list[RunRecord], labels: dict[str, str], save) -> None:
    """Loss per length class per round, the smallest length-skew α (the study's 0.1) next to IID,
    for each setting whose runs recorded the test_loss_c<k> columns."""
    for setting, e in by_setting(conds).items():
        if e["iid"] is None or not e["length"]:
            continue
        alpha = min(e["length"])
        skewed, iid = e["length"][alpha]["class_curves"], e["iid"]["class_curves"]
        if not set(skewed) & set(iid):
            continue
        diff = class_difference(e["length"][alpha], e["iid"])
        several = max((min(d["n"]) for d in diff.values() if d["n"]), default=1) > 1
        part = next((r.partition for r in runs if r.partition and setting_key(r.config) == setting), {})
        num = max(max(skewed), max(iid)) + 1
        names = class_labels(part.get("class_edges") if len(part.get("class_edges") or []) == num - 1
                              else None, num, part.get("length_measure", ""))
        label, skew = labels[setting], f"length skew α = {alpha:g}"
        save("classes", f"class_loss_{slug(label)}",
             class_loss_figure(skewed, iid, diff, names, skew, f"{label}: global test loss per length class"),
             f"Loss per length class, {label}, {skew} vs IID",
             "Token-weighted test loss of the global model on the global test texts of each length "
             "class (classed by full length with the training class edges), per round (round 0 = "
             "before training), mean over seeds; left the skewed condition, middle IID (shared y "
             "axis), right their difference, paired by seed: above 0, length skew hurts that class."
             + (" Bands: 95 % t-interval of the mean difference over seeds." if several else ""))


def _draw_local(runs: list[RunRecord], labels: dict[str, str], save) -> None:
    """Per-client curves, the smallest α next to IID (the study's Figs. 8 and 9)."""
    for pair in local_comparison(runs):
        key = local_key(pair["skewed"].config)
        fig_no = {"length": "Fig. 8", "quantity": "Fig. 9"}[pair["scheme"]]
        scheme_name = scheme_title(pair["scheme"])
        panels = [{"title": f"{scheme_name}, α = {pair['alpha']:g}",
                   "clients": client_curves(pair["skewed"].clients, key)}]
        if pair["iid"] is not None:
            panels.append({"title": "IID", "clients": client_curves(pair["iid"].clients, key)})
        what = ("local models after local training, on their own test split" if key == "local_model_test_loss"
                else "global model on each client's own test split")
        label = labels[pair["setting"]]
        study = is_study_setting(pair["setting"]) and not is_long_context(pair["setting"])
        save("local", f"local_{pair['scheme']}_{slug(label)}",
             client_pair_figure(panels, f"{label}: per-client test loss"),
             f"Per-client test loss, {label}, {scheme_name} α = {pair['alpha']:g} vs IID"
             + (f" (the study's {fig_no})" if study else ""),
             f"One curve per client: {what}. Panels share the y axis. Seed "
             f"{pair['skewed'].config.get('seed', 0)}.")


def _draw_strategies(runs: list[RunRecord], save) -> None:
    """Strategies side by side, per setting: loss, aggregation error and drift per round."""
    for i, entry in enumerate(strategy_curves(runs)):
        model = model_label(entry["model"])
        save("strategies", f"strategies_{slug(model)}_{i}",
             strategy_figure(entry["conditions"], f"{model}: strategies side by side"),
             f"Strategies side by side, {model}",
             "Per round, mean over seeds, one colour per strategy: the global model's test loss; the "
             "aggregation error ‖Σ p_k B_k A_k − B̄Ā‖ / ‖Σ p_k B_k A_k‖ of the round's client adapters "
             "(0 for FFA-LoRA, whose clients share A); the mean distance of the clients' adapters from "
             "the global adapter they started from (client drift).")


def _draw_privacy(runs: list[RunRecord], save) -> None:
    """Client-level DP, per setting that ran it: utility against ε, and the loss per length class
    with DP minus without (cllora.analysis.privacy); nothing where no run used DP."""
    gaps = class_gaps(runs)
    for entry in utility(runs):
        mine = [g for g in gaps if g["setting"] == entry["setting"]]
        part = next((r.partition for r in runs if r.partition and base_key(r.config) == entry["setting"]), {})
        num = max((c + 1 for g in mine for c in g["classes"]), default=0)
        names = class_labels(part.get("class_edges") if len(part.get("class_edges") or []) == num - 1
                             else None, num, part.get("length_measure", ""))
        label = entry["label"]
        several = any(len(p["seeds"]) > 1 for line in entry["lines"] for p in line["points"])
        save("privacy", f"privacy_{slug(label)}",
             privacy_figure(entry["lines"], mine, names, f"{label}: client-level DP, utility against ε"),
             f"Client-level DP, {label}: utility against ε" + (" and cost per length class" if mine else ""),
             "Left: final global test loss against ε after the last round, mean over complete seeds; "
             "ε = ∞ is clipping and the fixed denominator without noise; dotted: the same condition "
             "without DP." + (" Right: final loss of each length class with DP minus without, paired "
                              "by seed (above 0: DP costs that class more); against the runs without "
                              "DP, or, where there are none, the clipping-only ones." if mine else "")
             + (BAND if several else ""))


def _panels(conds: list[dict], settings: list[str], labels: dict[str, str], scheme: str,
            curve_key: str) -> list[dict]:
    """One panel per setting that ran `scheme`: its conditions' curves (IID included)."""
    panels = []
    for setting in settings:
        rows = [c for c in conds if c["setting"] == setting and c["scheme"] in (scheme, "iid")]
        if scheme != "iid" and not any(c["scheme"] == scheme for c in rows):
            continue
        curves = [{"label": c["label"] + (f" (n={c['n_seeds']})" if c["n_seeds"] > 1 else ""),
                   "scheme": c["scheme"], "alpha": c["alpha"], **c[curve_key]} for c in rows]
        panels.append({"title": labels[setting], "curves": curves})
    return panels


def _partition_caption(part: dict) -> str:
    stats = part.get("stats") or {}
    bits = [f"{part.get('num_clients')} clients"]
    if stats.get("size_min") is not None:
        bits.append(f"sizes {stats['size_min']}–{stats['size_max']}")
    if stats.get("mean_tv") is not None:
        bits.append(f"mean total-variation distance to the global length mix {stats['mean_tv']:.2f}")
    return "; ".join(bits)
