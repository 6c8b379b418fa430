"""The HTML report of a run or a sweep: statistics over runs (pure functions), then figures and HTML.

The statistics — per-run rows, per-condition aggregates over seeds, mean ± std curves and the
verdicts on the study's qualitative claims — are plain functions of dicts so they can be tested on
hand-made numbers. `write_report` gathers the run directories, calls them, has cllora.run_plots
draw, and writes one self-contained report.html (figures embedded as base64 PNG, no network)
plus every figure as PNG and SVG under DIR/figures/.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

# Settings that define a condition within a comparison; every other setting defines the comparison
# (a "setting": model, clients, rounds, ...). Seeds are repetitions of a condition.
CONDITION_KEYS = ("scheme", "alpha", "seed")
LITTLE_EFFECT = 0.05  # "little effect": local-model loss within 5 % of IID
SUPPORTED, NOT_SUPPORTED, NOT_TESTABLE = "supported", "not supported", "not testable"


# ---------------------------------------------------------------- runs on disk

@dataclass
class RunRecord:
    """One run directory as read from disk."""

    name: str  # path relative to the report root ("." for a single run)
    path: Path
    config: dict
    meta: dict  # precision, device, adapter_bytes from config.json
    rounds: list[dict]
    clients: list[dict]
    partition: dict | None
    summary: dict | None


def find_run_dirs(root: Path) -> list[Path]:
    """The run directories at or under `root` (a run has config.json and rounds.csv)."""
    root = Path(root)
    if (root / "config.json").is_file():
        return [root]
    found = [p.parent for p in root.rglob("config.json")
             if (p.parent / "rounds.csv").is_file() and "figures" not in p.parent.relative_to(root).parts]
    return sorted(found, key=lambda p: _natural_key(str(p.relative_to(root))))


def _natural_key(text: str) -> list:
    return [float(t) if re.fullmatch(r"\d+(\.\d+)?", t) else t
            for t in re.split(r"(\d+(?:\.\d+)?)", text)]


def load_run(path: Path, root: Path) -> RunRecord:
    from cllora import records

    raw = json.loads((path / "config.json").read_text())
    rel = path.relative_to(root).as_posix() if path != root else "."
    partition = _read_json(path / "partition.json")
    return RunRecord(
        name=rel, path=path, config=raw["config"],
        meta={k: v for k, v in raw.items() if k != "config"},
        rounds=records.read_csv(path / "rounds.csv"),
        clients=records.read_csv(path / "clients.csv") if (path / "clients.csv").is_file() else [],
        partition=partition, summary=_read_json(path / "summary.json"))


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


# ---------------------------------------------------------------- statistics (pure)

def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _curve(rounds: list[dict], key: str) -> list[tuple[int, float]]:
    return [(int(r["round"]), float(r[key])) for r in rounds if _finite(r.get(key))]


def _mean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if _finite(v)]
    return float(np.mean(vals)) if vals else None


def setting_key(config: dict) -> str:
    """What a run is compared within: every setting except scheme, alpha and seed."""
    return json.dumps({k: v for k, v in sorted(config.items()) if k not in CONDITION_KEYS},
                      sort_keys=True)


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
        varying = [k for k in configs[keys[0]]
                   if k not in CONDITION_KEYS and len({json.dumps(configs[s].get(k)) for s in keys}) > 1]
        for key in keys:
            extra = ", ".join(f"{k}={_short(configs[key].get(k))}" for k in varying)
            labels[key] = model_label(model) + (f", {extra}" if extra else "")
    return labels


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def run_row(name: str, config: dict, rounds: list[dict], complete: bool | None = None) -> dict:
    """One run's headline numbers from its config and rounds.csv rows.

    local_loss = mean over trained rounds of the local models' test loss on their own split;
    local_spread = mean over trained rounds of the variance of that loss across the round's clients.
    """
    losses = _curve(rounds, "global_test_loss")
    best_round, best = min(losses, key=lambda p: p[1]) if losses else (None, None)
    trained = [r for r in rounds if r.get("round", 0) >= 1]
    last = losses[-1][0] if losses else 0
    return {
        "name": name, "model": config["model"], "setting": setting_key(config),
        "scheme": config["scheme"], "alpha": None if config["scheme"] == "iid" else float(config["alpha"]),
        "seed": config.get("seed", 0), "rounds_planned": config.get("rounds"),
        "rounds_completed": last,
        "complete": (last >= (config.get("rounds") or 0)) if complete is None else complete,
        "initial_loss": losses[0][1] if losses and losses[0][0] == 0 else None,
        "final_loss": losses[-1][1] if losses else None,
        "best_loss": best, "best_round": best_round,
        "final_fairness_var": (_curve(rounds, "fairness_var") or [(None, None)])[-1][1],
        "local_loss": _mean(r.get("local_models_test_loss_mean") for r in trained),
        "local_spread": _mean(r.get("local_models_var") for r in trained),
        "total_bytes": (rounds[-1].get("bytes_cumulative") if rounds else None),
        "seconds": sum((r.get("round_seconds") or 0.0) for r in rounds),
        "curve": losses, "fairness_curve": _curve(rounds, "fairness_var"),
    }


def mean_std_curve(curves: list[list[tuple[int, float]]]) -> dict:
    """Per round: mean, sample std (0 with one seed) and how many seeds had a value."""
    by_round: dict[int, list[float]] = {}
    for curve in curves:
        for rnd, value in curve:
            by_round.setdefault(rnd, []).append(value)
    rounds = sorted(by_round)
    vals = [np.asarray(by_round[r], dtype=float) for r in rounds]
    return {"x": rounds, "mean": [float(v.mean()) for v in vals],
            "std": [float(v.std(ddof=1)) if len(v) > 1 else 0.0 for v in vals],
            "n": [len(v) for v in vals]}


def condition_label(scheme: str, alpha: float | None) -> str:
    return "IID" if scheme == "iid" else f"α = {alpha:g}"


def condition_rows(rows: list[dict]) -> list[dict]:
    """Runs grouped by (setting, scheme, alpha): means (and std of the final loss) over seeds.

    best_loss / best_round come from the seed-mean curve: the round where the averaged loss is
    lowest, after which the averaged curve rises (overfitting begins) unless it is the last.
    """
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["setting"], row["scheme"], row["alpha"]), []).append(row)
    out = []
    for (setting, scheme, alpha), runs in groups.items():
        curve = mean_std_curve([r["curve"] for r in runs])
        fair = mean_std_curve([r["fairness_curve"] for r in runs])
        best_i = int(np.argmin(curve["mean"])) if curve["x"] else None
        finals = [r["final_loss"] for r in runs if _finite(r["final_loss"])]
        out.append({
            "setting": setting, "model": runs[0]["model"], "scheme": scheme, "alpha": alpha,
            "label": condition_label(scheme, alpha), "seeds": sorted(r["seed"] for r in runs),
            "n_seeds": len(runs), "complete": all(r["complete"] for r in runs),
            "initial_loss": _mean(r["initial_loss"] for r in runs),
            "final_loss": _mean(finals),
            "final_loss_std": float(np.std(finals, ddof=1)) if len(finals) > 1 else None,
            "best_loss": curve["mean"][best_i] if best_i is not None else None,
            "best_round": curve["x"][best_i] if best_i is not None else None,
            "last_round": curve["x"][-1] if curve["x"] else None,
            "final_fairness_var": _mean(r["final_fairness_var"] for r in runs),
            "local_loss": _mean(r["local_loss"] for r in runs),
            "local_spread": _mean(r["local_spread"] for r in runs),
            "curve": curve, "fairness_curve": fair,
        })
    return sorted(out, key=_condition_order)


def _condition_order(row: dict) -> tuple:
    return (row["setting"], row["scheme"] == "iid", row["scheme"], row["alpha"] or 0.0)


def overfit_note(row: dict, tolerance: float = 0.002) -> str:
    """'round k' if the seed-mean curve is lowest before its last round by more than `tolerance`
    (relative), else '—' (still improving or flat at the end)."""
    best, final, rnd, last = row["best_loss"], row["final_loss"], row["best_round"], row["last_round"]
    if not all(_finite(v) for v in (best, final)) or rnd is None or rnd == last:
        return "—"
    return f"after round {rnd}" if final - best > tolerance * abs(best) else "—"


def _by_setting(conds: list[dict]) -> dict[str, dict]:
    """{setting: {"iid": row | None, "length": {alpha: row}, "quantity": {alpha: row}}}."""
    out: dict[str, dict] = {}
    for row in conds:
        entry = out.setdefault(row["setting"], {"iid": None, "length": {}, "quantity": {},
                                                "model": row["model"]})
        if row["scheme"] == "iid":
            entry["iid"] = row
        else:
            entry[row["scheme"]][row["alpha"]] = row
    return out


def _f(x: float | None, digits: int = 4) -> str:
    return "n/a" if not _finite(x) else f"{x:.{digits}f}"


def _g(x: float | None) -> str:
    return "n/a" if not _finite(x) else f"{x:.3g}"


def _pm(row: dict) -> str:
    std = row.get("final_loss_std")
    return _f(row["final_loss"]) + (f" ± {std:.4f}" if _finite(std) else "")


def _verdict(holds: list[bool]) -> str:
    if not holds:
        return NOT_TESTABLE
    return SUPPORTED if all(holds) else NOT_SUPPORTED


def _claim(claim: str, source: str, test: str, holds: list[bool], evidence: list[str],
           missing: str) -> dict:
    verdict = _verdict(holds)
    if verdict == NOT_SUPPORTED and len(holds) > 1:
        evidence = evidence + [f"holds in {sum(holds)} of {len(holds)} comparisons"]
    return {"claim": claim, "source": source, "test": test, "verdict": verdict,
            "evidence": evidence if holds else [missing]}


def claim_iid_best_quantity(conds: list[dict], labels: dict[str, str] | None = None) -> dict:
    """IID gives the lowest final global test loss under quantity skew (study, Fig. 7)."""
    labels = labels or {}
    holds, evidence = [], []
    for setting, e in _by_setting(conds).items():
        if e["iid"] is None or not e["quantity"]:
            continue
        qs = e["quantity"]
        best_q = min(qs.values(), key=lambda r: r["final_loss"])
        ok = e["iid"]["final_loss"] < best_q["final_loss"]
        holds.append(ok)
        evidence.append(f"{labels.get(setting, model_label(e['model']))}: IID {_pm(e['iid'])}; "
                        + ", ".join(f"{r['label']} {_pm(r)}" for _, r in sorted(qs.items())))
    return _claim("IID gives the lowest global test loss under quantity skew", "Fig. 7",
                  "final global test loss (mean over seeds) of IID below every quantity-skew α",
                  holds, evidence, "needs IID and quantity-skew runs of the same setting")


def claim_alpha100_worst_quantity(conds: list[dict], labels: dict[str, str] | None = None) -> dict:
    """α = 100 gives the highest final global test loss under quantity skew (study, Fig. 7)."""
    labels = labels or {}
    holds, evidence = [], []
    for setting, e in _by_setting(conds).items():
        qs = e["quantity"]
        if 100.0 not in qs:
            continue
        others = [r for a, r in qs.items() if a != 100.0] + ([e["iid"]] if e["iid"] else [])
        if not others:
            continue
        worst_other = max(others, key=lambda r: r["final_loss"])
        holds.append(qs[100.0]["final_loss"] > worst_other["final_loss"])
        evidence.append(f"{labels.get(setting, model_label(e['model']))}: α = 100 {_pm(qs[100.0])}; "
                        f"worst of the others {worst_other['label']} {_pm(worst_other)}")
    return _claim("α = 100 is worst under quantity skew", "Fig. 7",
                  "final global test loss of quantity-skew α = 100 above every other α and IID",
                  holds, evidence, "needs a quantity-skew run with α = 100 and another condition "
                                   "of the same setting")


def length_sensitivity(entry: dict) -> float | None:
    """Spread of the final global loss over length-skew α values and IID, relative to their mean."""
    rows = list(entry["length"].values()) + ([entry["iid"]] if entry["iid"] else [])
    finals = [r["final_loss"] for r in rows if _finite(r["final_loss"])]
    if len(finals) < 2 or not entry["length"]:
        return None
    return float((max(finals) - min(finals)) / abs(np.mean(finals)))


def _spearman(x: list[float], y: list[float]) -> float:
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    if np.std(rx) == 0 or np.std(ry) == 0:
        return 0.0
    return float(np.corrcoef(rx, ry)[0, 1])


def claim_small_models_length_sensitive(conds: list[dict], model_sizes: dict[str, int],
                                        labels: dict[str, str] | None = None) -> dict:
    """Smaller models are more sensitive to length skew (study, Fig. 6 and its analysis).

    Sensitivity of a model = (max − min) / mean of the final global loss over its length-skew α
    values and IID. Supported when sensitivity falls with model size (Spearman ρ < 0; with two
    models: the smaller one is more sensitive).
    """
    labels = labels or {}
    points = {}
    for setting, e in _by_setting(conds).items():
        s = length_sensitivity(e)
        if s is not None and e["model"] in model_sizes:
            points.setdefault(e["model"], []).append(s)
    test = ("sensitivity = (max − min) / mean of final global loss over length-skew α and IID; "
            "supported if it falls with model size (Spearman ρ < 0)")
    if len(points) < 2:
        found = ", ".join(f"{model_label(m)} {np.mean(v):.3%}" for m, v in points.items())
        return {"claim": "smaller models are more sensitive to length skew", "source": "Fig. 6, analysis",
                "test": test, "verdict": NOT_TESTABLE,
                "evidence": [f"needs length-skew runs of at least 2 models of known size"
                             + (f"; have {found}" if found else "")]}
    models = sorted(points, key=lambda m: model_sizes[m])
    sizes = [model_sizes[m] for m in models]
    sens = [float(np.mean(points[m])) for m in models]
    rho = _spearman(sizes, sens)
    evidence = [", ".join(f"{model_label(m)} ({model_sizes[m] / 1e6:.0f} M params): {s:.3%}"
                          for m, s in zip(models, sens)), f"Spearman ρ(size, sensitivity) = {rho:+.2f}"]
    return {"claim": "smaller models are more sensitive to length skew", "source": "Fig. 6, analysis",
            "test": test, "verdict": SUPPORTED if rho < 0 else NOT_SUPPORTED, "evidence": evidence}


def _skew_ratio(entry: dict, scheme: str, key: str, alpha: float) -> float | None:
    row, iid = entry[scheme].get(alpha), entry["iid"]
    if row is None or iid is None or not _finite(row[key]) or not _finite(iid[key]) or iid[key] <= 0:
        return None
    return row[key] / iid[key]


def claim_quantity_fairness_worse(conds: list[dict], labels: dict[str, str] | None = None) -> dict:
    """Quantity skew hurts fairness more than length skew (study, Figs. 8 and 9).

    Unfairness of a condition = local_spread (variance across clients of the local models' own
    test loss, averaged over rounds), relative to IID of the same setting, at the smallest α run
    under both schemes. Supported when quantity's ratio exceeds length's for every model.
    """
    by_setting = _by_setting(conds)
    by_model: dict[str, dict[str, list]] = {}
    for setting, e in by_setting.items():
        for scheme in ("length", "quantity"):
            if e[scheme] and e["iid"] is not None:
                by_model.setdefault(e["model"], {}).setdefault(scheme, []).append(e)
    holds, evidence = [], []
    for model, schemes in by_model.items():
        if "length" not in schemes or "quantity" not in schemes:
            continue
        common = sorted(set.intersection(*[set(e[s]) for s in ("length", "quantity")
                                           for e in schemes[s]]))
        if not common:
            continue
        alpha = common[0]
        ratios = {s: _mean(_skew_ratio(e, s, "local_spread", alpha) for e in schemes[s])
                  for s in ("length", "quantity")}
        if not all(_finite(v) for v in ratios.values()):
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
                                     threshold: float = LITTLE_EFFECT) -> dict:
    """Length skew has little effect on local training (study, Fig. 8): the local models' mean
    test loss at the smallest length-skew α is within `threshold` (relative) of IID's."""
    labels = labels or {}
    holds, evidence = [], []
    for setting, e in _by_setting(conds).items():
        if e["iid"] is None or not e["length"]:
            continue
        alpha = min(e["length"])
        row, iid = e["length"][alpha], e["iid"]
        if not (_finite(row["local_loss"]) and _finite(iid["local_loss"])):
            continue
        rel = (row["local_loss"] - iid["local_loss"]) / iid["local_loss"]
        holds.append(abs(rel) <= threshold)
        evidence.append(f"{labels.get(setting, model_label(e['model']))}: local models' test loss "
                        f"α = {alpha:g} {_f(row['local_loss'])} vs IID {_f(iid['local_loss'])} "
                        f"({rel:+.1%})")
    return _claim("length skew has little effect on local training", "Fig. 8",
                  f"mean test loss of the local models on their own split (mean over rounds) at the "
                  f"smallest length-skew α within {threshold:.0%} of IID's",
                  holds, evidence, "needs length-skew and IID runs of the same setting with local "
                                   "evaluations")


def evaluate_claims(conds: list[dict], model_sizes: dict[str, int] | None = None,
                    labels: dict[str, str] | None = None) -> list[dict]:
    """The study's qualitative claims, each with a verdict and the numbers behind it."""
    return [
        claim_iid_best_quantity(conds, labels),
        claim_alpha100_worst_quantity(conds, labels),
        claim_small_models_length_sensitive(conds, model_sizes or {}, labels),
        claim_quantity_fairness_worse(conds, labels),
        claim_length_little_local_effect(conds, labels),
    ]


def local_comparison(records: list[RunRecord]) -> list[dict]:
    """Pairs for the local-training figures (Figs. 8/9): per setting and skew scheme, the run at
    the smallest α and the IID run (first seed of each)."""
    by_setting: dict[str, dict] = {}
    for rec in sorted(records, key=lambda r: r.config.get("seed", 0)):
        e = by_setting.setdefault(setting_key(rec.config), {"iid": None, "length": {}, "quantity": {}})
        scheme = rec.config["scheme"]
        if scheme == "iid":
            e["iid"] = e["iid"] or rec
        else:
            e[scheme].setdefault(float(rec.config["alpha"]), rec)
    pairs = []
    for setting, e in by_setting.items():
        for scheme in ("length", "quantity"):
            if e[scheme]:
                alpha = min(e[scheme])
                pairs.append({"setting": setting, "scheme": scheme, "alpha": alpha,
                              "skewed": e[scheme][alpha], "iid": e["iid"]})
    return pairs


def client_curves(clients: list[dict], key: str) -> dict[int, tuple[list[int], list[float]]]:
    """{client id: (rounds, values)} of one clients.csv column, finite values only."""
    out: dict[int, tuple[list[int], list[float]]] = {}
    for row in clients:
        if _finite(row.get(key)):
            xs, ys = out.setdefault(int(row["client_id"]), ([], []))
            xs.append(int(row["round"]))
            ys.append(float(row[key]))
    return dict(sorted(out.items()))


def local_key(config: dict) -> str:
    """Which per-client loss to draw: the local models' own (dense when most clients train each
    round, as in the study's local experiment), else the global model on each client's split."""
    if config.get("clients_per_round", 1) * 2 >= config.get("clients", 1):
        return "local_model_test_loss"
    return "global_model_local_test_loss"


# ---------------------------------------------------------------- writing the report

@dataclass
class Figure:
    key: str
    title: str
    caption: str
    png: Path
    svg: Path


def write_report(root: str | Path, log: Callable[[str], None] = print) -> Path:
    """Write root/report.html and root/figures/*.png|svg for the run(s) at or under `root`."""
    from cllora.errors import UserError

    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{str(root)!r} is not a directory")
    dirs = find_run_dirs(root)
    if not dirs:
        raise UserError(f"{str(root)!r} holds no cllora runs (no run directory with config.json and "
                        "rounds.csv at or under it)")
    records = []
    for d in dirs:
        try:
            records.append(load_run(d, root))
        except (OSError, KeyError, ValueError, json.JSONDecodeError) as exc:
            log(f"skipping {d}: unreadable run ({exc})")
    if not records:
        raise UserError(f"no readable run under {str(root)!r}")
    rows = [run_row(r.name, r.config, r.rounds, _complete(r)) for r in records]
    conds = condition_rows(rows)
    configs = {setting_key(r.config): r.config for r in records}
    labels = setting_labels(configs)
    costs = cost_table(records, log)
    sizes = {c["model"]: c["total_params"] for c in costs if c.get("total_params")}
    claims = evaluate_claims(conds, sizes, labels)
    figures = draw_figures(root, records, conds, labels, log)
    page = render_html(root, records, rows, conds, labels, costs, claims, figures)
    out = root / "report.html"
    from cllora.records import atomic_write_text

    atomic_write_text(out, page)
    return out


def _complete(rec: RunRecord) -> bool:
    return rec.summary is not None and (rec.summary.get("rounds_completed") or 0) >= rec.config["rounds"]


def cost_table(records: list[RunRecord], log: Callable[[str], None] = print) -> list[dict]:
    """The communication-cost row of each (model, rank, targets) used, plus the measured adapter
    bytes and total traffic of the runs."""
    from cllora.model import cost_row

    seen: dict[tuple, dict] = {}
    for rec in records:
        cfg = rec.config
        key = (cfg["model"], cfg["rank"], tuple(cfg["targets"]))
        if key in seen:
            continue
        try:
            row = cost_row(cfg["model"], rank=cfg["rank"], alpha=cfg["lora_alpha"], targets=cfg["targets"])
        except Exception as exc:  # e.g. a hub model without network: keep the measured numbers
            log(f"cost table: cannot build {cfg['model']} on the meta device ({exc})")
            row = {"model": cfg["model"], "rank": cfg["rank"], "targets": list(cfg["targets"]),
                   "error": str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__}
        row["adapter_bytes"] = rec.meta.get("adapter_bytes")
        runs = [r for r in records if (r.config["model"], r.config["rank"], tuple(r.config["targets"])) == key]
        traffic = [r.rounds[-1].get("bytes_cumulative") for r in runs if r.rounds]
        row["traffic_per_run"] = _mean(traffic)
        seen[key] = row
    return list(seen.values())


STUDY_TABLE1 = (("facebook/opt-125m", 73_728, 125_313_024), ("facebook/opt-350m", 196_608, 331_393_024),
                ("facebook/opt-1.3b", 393_216, 1_316_151_296))


def study_table(log: Callable[[str], None] = print) -> list[dict]:
    """The study's Table 1 (OPT, r = 2 on q/v) recomputed from the bundled configs, beside the paper."""
    from cllora.model import cost_row

    out = []
    for name, trainable, total in STUDY_TABLE1:
        try:
            row = cost_row(name, rank=2)
        except Exception as exc:
            log(f"study table: {name}: {exc}")
            continue
        row["paper_trainable"], row["paper_total"] = trainable, total
        out.append(row)
    return out


def draw_figures(root: Path, records: list[RunRecord], conds: list[dict], labels: dict[str, str],
                 log: Callable[[str], None] = print) -> dict[str, list[Figure]]:
    """Every figure of the report, saved as PNG and SVG in root/figures; grouped by section."""
    from cllora import run_plots

    fig_dir = root / "figures"
    fig_dir.mkdir(exist_ok=True)
    out: dict[str, list[Figure]] = {"global": [], "fairness": [], "local": [], "partition": []}

    def save(section, key, fig, title, caption):
        png, svg = run_plots.save_figure(fig, fig_dir / key)
        out[section].append(Figure(key, title, caption, png, svg))

    settings = list(dict.fromkeys(c["setting"] for c in conds))
    schemes = [s for s in ("length", "quantity") if any(c["scheme"] == s for c in conds)] or ["iid"]
    for scheme in schemes:
        panels = _panels(conds, settings, labels, scheme, "curve")
        if panels:
            what = {"length": "length skew (the study's Fig. 6)",
                    "quantity": "quantity skew (the study's Fig. 7)", "iid": "IID"}[scheme]
            seeds = max(c["n_seeds"] for c in conds)
            band = " Bands: mean ± std over seeds." if seeds > 1 else ""
            save("global", f"global_loss_{scheme}",
                 run_plots.comparison_figure(panels, f"Global test loss per round, {what}",
                                             "global test loss (nats/token)"),
                 f"Global test loss, {what}",
                 f"Test loss of the aggregated model on the held-out test set after each round "
                 f"(round 0 = before training); one panel per model, one curve per α and IID.{band}")
            save("fairness", f"fairness_{scheme}",
                 run_plots.comparison_figure(_panels(conds, settings, labels, scheme, "fairness_curve"),
                                             f"Fairness per round, {what.split(' (')[0]}",
                                             "variance of client test loss", log_y="auto"),
                 f"Fairness, {what.split(' (')[0]}",
                 "Variance across all clients of the global model's test loss on each client's own "
                 "test split (lower is fairer).")
    for pair in local_comparison(records):
        key = local_key(pair["skewed"].config)
        fig_no = {"length": "Fig. 8", "quantity": "Fig. 9"}[pair["scheme"]]
        scheme_name = {"length": "length skew", "quantity": "quantity skew"}[pair["scheme"]]
        panels = [{"title": f"{scheme_name}, α = {pair['alpha']:g}",
                   "clients": client_curves(pair["skewed"].clients, key)}]
        if pair["iid"] is not None:
            panels.append({"title": "IID", "clients": client_curves(pair["iid"].clients, key)})
        what = ("local models after local training, on their own test split" if key == "local_model_test_loss"
                else "global model on each client's own test split")
        slug = _slug(labels[pair["setting"]])
        save("local", f"local_{pair['scheme']}_{slug}",
             run_plots.client_pair_figure(panels, f"{labels[pair['setting']]}: per-client test loss "
                                                  f"({what})"),
             f"Per-client test loss, {labels[pair['setting']]}, {scheme_name} α = {pair['alpha']:g} vs IID "
             f"(the study's {fig_no})",
             f"One curve per client: {what}. Panels share the y axis. Seed "
             f"{pair['skewed'].config.get('seed', 0)}.")
    for rec in records:
        if rec.partition is None:
            continue
        try:
            fig = run_plots.partition_figure(rec.partition)
        except Exception as exc:
            log(f"partition plot of {rec.name} failed: {exc}")
            continue
        save("partition", f"partition_{_slug(rec.name)}", fig, f"Partition: {rec.name}",
             _partition_caption(rec.partition))
    return out


def _panels(conds, settings, labels, scheme, curve_key) -> list[dict]:
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


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "run"


# ---------------------------------------------------------------- HTML

CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;color:#1d232a;
background:#fafbfc;line-height:1.45}
main{max-width:1180px;margin:0 auto;padding:24px 28px 60px}
h1{font-size:1.6em;margin:.2em 0}h2{font-size:1.25em;margin-top:2.2em;border-bottom:1px solid #d8dee4;
padding-bottom:.25em}h3{font-size:1.05em;margin:1.4em 0 .4em}
p.lead{color:#57606a;margin-top:0}
table{border-collapse:collapse;margin:.6em 0 1em;font-size:.9em;background:#fff}
th,td{border:1px solid #d8dee4;padding:4px 9px;text-align:left;vertical-align:top}
th{background:#f0f3f6;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
.verdict{display:inline-block;padding:1px 8px;border-radius:10px;font-size:.85em;font-weight:600;
white-space:nowrap}
.supported{background:#dafbe1;color:#116329}.not-supported{background:#ffebe9;color:#a40e26}
.not-testable{background:#eaeef2;color:#57606a}
figure{margin:1em 0 1.6em;background:#fff;border:1px solid #d8dee4;border-radius:6px;padding:10px}
figure img{max-width:100%;height:auto;display:block;margin:0 auto}
figcaption{font-size:.88em;color:#57606a;margin-top:6px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:12px}
.grid figure{margin:0}
.small{font-size:.85em;color:#57606a}code{background:#eff1f3;padding:0 4px;border-radius:3px}
ul.evidence{margin:0;padding-left:1.1em}
nav a{margin-right:14px;color:#0969da;text-decoration:none}
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _table_html(head: list[str], rows: list[list[Any]], numeric: set[int] = frozenset()) -> str:
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = []
    for row in rows:
        tds = "".join(f"<td class=\"num\">{_e(v)}</td>" if i in numeric else f"<td>{v}</td>"
                      for i, v in enumerate(row))
        body.append(f"<tr>{tds}</tr>")
    return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _img(fig: Figure) -> str:
    data = base64.b64encode(fig.png.read_bytes()).decode("ascii")
    files = (f"<a href=\"figures/{_e(fig.png.name)}\">PNG</a> · "
             f"<a href=\"figures/{_e(fig.svg.name)}\">SVG</a>")
    return (f"<figure id=\"fig-{_e(fig.key)}\"><img alt=\"{_e(fig.title)}\" "
            f"src=\"data:image/png;base64,{data}\"><figcaption><b>{_e(fig.title)}.</b> "
            f"{_e(fig.caption)} <span class=\"small\">({files})</span></figcaption></figure>")


def render_html(root: Path, records, rows, conds, labels, costs, claims, figures) -> str:
    from cllora import __version__

    index = _read_json(root / "index.json") or {}
    sweep = index.get("sweep", {})
    title = sweep.get("name") or (records[0].name if len(records) == 1 and records[0].name != "." else root.name)
    complete = sum(r["complete"] for r in rows)
    parts = [f"<h1>cllora report: {_e(title)}</h1>",
             f"<p class=\"lead\">{_e(sweep.get('description', ''))}</p>" if sweep.get("description") else "",
             f"<p class=\"small\">{len(records)} run(s), {complete} complete · generated "
             f"{dt.datetime.now():%Y-%m-%d %H:%M} by cllora {__version__} from <code>{_e(root.resolve())}</code></p>",
             "<nav><a href=\"#claims\">Claims</a><a href=\"#cost\">Communication cost</a>"
             "<a href=\"#global\">Global loss</a><a href=\"#tables\">Tables</a>"
             "<a href=\"#fairness\">Fairness</a><a href=\"#local\">Local training</a>"
             "<a href=\"#partitions\">Partitions</a><a href=\"#runs\">Runs</a></nav>",
             _settings_html(records, labels)]
    parts.append("<h2 id=\"claims\">The study's claims, tested on these runs</h2>")
    parts.append(_table_html(["Claim (study)", "Verdict", "Evidence", "How it is tested"], [
        [f"{_e(c['claim'])} <span class=\"small\">({_e(c['source'])})</span>",
         f"<span class=\"verdict {c['verdict'].replace(' ', '-')}\">{_e(c['verdict'])}</span>",
         "<ul class=\"evidence\">" + "".join(f"<li>{_e(x)}</li>" for x in c["evidence"]) + "</ul>",
         f"<span class=\"small\">{_e(c['test'])}</span>"] for c in claims]))
    parts.append("<p class=\"small\">Verdicts compare means over seeds; with one seed or a quick "
                 "preset, differences may be within run-to-run noise (see the ± std of the tables when "
                 "several seeds ran).</p>")
    parts.append(_cost_html(costs))
    parts.append("<h2 id=\"global\">Global model: test loss per round</h2>")
    parts.extend(_img(f) for f in figures["global"])
    parts.append("<h2 id=\"tables\">Final and best loss per model and scheme</h2>")
    parts.append(_summary_tables(conds, labels))
    parts.append("<h2 id=\"fairness\">Fairness across clients</h2>")
    parts.extend(_img(f) for f in figures["fairness"])
    parts.append("<h2 id=\"local\">Local training: per-client test loss, α vs IID</h2>")
    parts.extend(_img(f) for f in figures["local"])
    if not figures["local"]:
        parts.append("<p>No skewed run to compare.</p>")
    parts.append("<h2 id=\"partitions\">Partitions</h2><div class=\"grid\">")
    parts.extend(_img(f) for f in figures["partition"])
    parts.append("</div>")
    parts.append("<h2 id=\"runs\">Runs</h2>")
    parts.append(_runs_html(rows, index))
    body = "\n".join(p for p in parts if p)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>cllora report: {_e(title)}</title><style>{CSS}</style></head>"
            f"<body><main>\n{body}\n</main></body></html>\n")


def _settings_html(records: list[RunRecord], labels: dict[str, str]) -> str:
    """The settings shared by every run, and per model the ones that differ."""
    keys = ("dataset", "max_train_examples", "max_test_examples", "max_length", "clients",
            "clients_per_round", "rounds", "local_epochs", "batch_size", "lr", "rank", "lora_alpha",
            "targets", "num_classes", "length_measure", "precision")
    rows = []
    for k in keys:
        values = list(dict.fromkeys(_short(r.config.get(k)) for r in records))
        if len(values) == 1:
            rows.append([_e(k), _e(values[0])])
        else:
            per = dict.fromkeys(f"{model_label(r.config['model'])}/{r.config['scheme']}: "
                                f"{_short(r.config.get(k))}" for r in records)
            rows.append([_e(k), _e("; ".join(per))])
    precisions = sorted({str(r.meta.get("precision")) for r in records})
    devices = sorted({str(r.meta.get("device")) for r in records})
    rows.append(["resolved precision, device", _e(f"{', '.join(precisions)}; {', '.join(devices)}")])
    return "<h3>Settings</h3>" + _table_html(["setting", "value"], rows)


def _cost_html(costs: list[dict]) -> str:
    rows = []
    for c in costs:
        if "error" in c:
            rows.append([_e(model_label(c["model"])), _e(c["rank"]), _e(",".join(c["targets"])),
                         "n/a", "n/a", "n/a", "n/a", _mb(c.get("adapter_bytes")), _mb(c.get("traffic_per_run"))])
            continue
        rows.append([_e(model_label(c["model"])), _e(c["rank"]), _e(",".join(c["targets"])),
                     f"{c['trainable_params']:,}", f"{c['total_params']:,}", f"{100 * c['ratio']:.4f} %",
                     _mb(c["bytes_per_transfer"]), _mb(c.get("adapter_bytes")),
                     _mb(c.get("traffic_per_run"))])
    out = ["<h2 id=\"cost\">Communication cost</h2>",
           "<p>What travels between clients and server: only the LoRA matrices (the study's Table 1). "
           "Bytes per transfer are fp32; a round moves one transfer down and one up per sampled client.</p>",
           _table_html(["Model", "r", "targets", "Trainable", "All parameters", "Ratio",
                        "MB per transfer", "MB measured", "MB per run (total)"], rows,
                       numeric={1, 3, 4, 5, 6, 7, 8})]
    try:
        study = study_table(log=lambda m: None)
    except Exception:
        study = []
    if study:
        out.append("<h3>The study's Table 1, recomputed (OPT, r = 2 on q_proj, v_proj)</h3>")
        out.append(_table_html(["Model", "Trainable", "All parameters", "Ratio", "MB per transfer",
                                "Paper: trainable", "Paper: all parameters"],
                               [[_e(model_label(s["model"])), f"{s['trainable_params']:,}",
                                 f"{s['total_params']:,}", f"{100 * s['ratio']:.4f} %",
                                 _mb(s["bytes_per_transfer"]), f"{s['paper_trainable']:,}",
                                 f"{s['paper_total']:,}"] for s in study], numeric={1, 2, 3, 4, 5, 6}))
    return "\n".join(out)


def _mb(x: float | None) -> str:
    return "n/a" if not _finite(x) else f"{x / 1e6:.3f}"


def _summary_tables(conds: list[dict], labels: dict[str, str]) -> str:
    out = []
    settings = list(dict.fromkeys(c["setting"] for c in conds))
    for setting in settings:
        rows = [c for c in conds if c["setting"] == setting]
        skews = [s for s in ("length", "quantity") if any(c["scheme"] == s for c in rows)] or ["iid"]
        for scheme in skews:
            sel = [c for c in rows if c["scheme"] in (scheme, "iid")]
            name = {"length": "length skew", "quantity": "quantity skew", "iid": "IID"}[scheme]
            out.append(f"<h3>{_e(labels[setting])} · {name}</h3>")
            out.append(_table_html(
                ["Condition", "Seeds", "Round-0 loss", "Final loss", "Best loss", "Best round",
                 "Overfitting", "Final fairness var", "Local models' loss", "Local spread (var)"],
                [[_e(c["label"] + ("" if c["complete"] else " (incomplete)")), c["n_seeds"],
                  _f(c["initial_loss"]), _pm(c), _f(c["best_loss"]), c["best_round"],
                  overfit_note(c), _g(c["final_fairness_var"]), _f(c["local_loss"]), _g(c["local_spread"])]
                 for c in sel], numeric={1, 2, 3, 4, 5, 7, 8, 9}))
    out.append("<p class=\"small\">Final/best loss: global test loss (nats/token) at the last round / "
               "lowest over rounds of the seed-mean curve; overfitting: the curve's minimum comes before "
               "the last round and the last is over 0.2 % higher. Fairness var: variance across all "
               "clients of the global model's loss on their own test split. Local models' loss / spread: "
               "mean over rounds of the trained clients' local-model loss on their own split, and its "
               "variance across those clients.</p>")
    return "\n".join(out)


def _runs_html(rows: list[dict], index: dict) -> str:
    status = {c["name"]: c for c in index.get("cells", [])}
    table = []
    for r in rows:
        entry = status.get(r["name"], {})
        state = entry.get("status") or ("done" if r["complete"] else "partial")
        err = entry.get("error")
        table.append([f"<code>{_e(r['name'])}</code>", _e(state + (f": {err}" if err else "")),
                      f"{r['rounds_completed']}/{r['rounds_planned']}", _f(r["initial_loss"]),
                      _f(r["final_loss"]), _f(r["best_loss"]), r["best_round"], _g(r["final_fairness_var"]),
                      _mb(r["total_bytes"]), f"{r['seconds'] / 60:.1f}"])
    shown = {r["name"] for r in rows}
    for name, entry in status.items():  # cells of the sweep with no results yet
        if name not in shown:
            err = entry.get("error")
            table.append([f"<code>{_e(name)}</code>", _e(entry.get("status", "pending") + (f": {err}" if err else "")),
                          f"0/{entry.get('rounds', '?')}", "", "", "", "", "", "", ""])
    return _table_html(["Run", "Status", "Rounds", "Round-0 loss", "Final loss", "Best loss", "Best round",
                        "Final fairness var", "MB sent", "Minutes"], table, numeric={3, 4, 5, 6, 7, 8, 9})
