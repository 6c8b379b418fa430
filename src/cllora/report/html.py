"""The report page: its CSS and the HTML of each section (settings, claims with effect, interval,
seeds and verdict, communication cost, figures, summary tables, runs). One self-contained file:
figures embedded as base64 PNG, no script, no network.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
from pathlib import Path
from typing import Any

from cllora import __version__, records
from cllora.aggregate.traffic import BYTES_PER_PARAM
from cllora.partition.registry import scheme_title
from cllora.analysis.conditions import model_label, overfit_note, seed_spread
from cllora.analysis.setting_names import run_settings, settings_matrix, sweep_label
from cllora.report.claims_html import claims_html
from cllora.report.draw import Figure
from cllora.report.fairness_html import fairness_cover, fairness_html
from cllora.report.privacy_html import privacy_html
from cllora.analysis.runs import RunRecord, hardware_summary
from cllora.analysis.stats import finite, fmt, fmt_column, fmt_count, fmt_effect, fmt_g, fmt_interval, fmt_mb, fmt_pm, fmt_signed
from cllora.analysis.strategies import strategy_rows

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
.supported{background:#dafbe1;color:#116329}.contradicted{background:#ffebe9;color:#a40e26}
.inconclusive{background:#fff8c5;color:#7d4e00}.not-testable{background:#eaeef2;color:#57606a}
figure{margin:1em 0 1.6em;background:#fff;border:1px solid #d8dee4;border-radius:6px;padding:10px}
figure img{max-width:100%;height:auto;display:block;margin:0 auto}
figcaption{font-size:.88em;color:#57606a;margin-top:6px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:12px}
.grid figure{margin:0}
.small{font-size:.85em;color:#57606a}code{background:#eff1f3;padding:0 4px;border-radius:3px}
ul.evidence{margin:0;padding-left:1.1em}.effect{white-space:nowrap;font-variant-numeric:tabular-nums}
nav a{margin-right:14px;color:#0969da;text-decoration:none}
table.claims{font-size:.86em;width:100%;line-height:1.3}table.claims>tbody>tr>td:first-child{width:52%}table.claims td{padding:3px 8px}table.claims summary{cursor:pointer}
table.claims summary::marker{color:#0969da}table.evidence{font-size:.92em;margin:.4em 0}table.evidence tr.shown td{color:#6e7781}
div.scroll{overflow-x:auto;max-width:100%}table.matrix{font-size:.82em}table.matrix td:first-child{min-width:300px}table.matrix td,table.matrix th{padding:2px 6px}
"""

NAV = ("<nav><a href=\"#claims\">Claims</a><a href=\"#settings\">Settings</a><a href=\"#cost\">Communication cost</a>"
       "<a href=\"#global\">Global loss</a><a href=\"#classes\">Length classes</a>"
       "<a href=\"#tables\">Tables</a><a href=\"#strategies\">Strategies</a>"
       "<a href=\"#fairness\">Fairness</a><a href=\"#local\">Local training</a>"
       "<a href=\"#partitions\">Partitions</a><a href=\"#runs\">Runs</a></nav>")
# The study's Table 1 (OPT, LoRA r = 2 on q_proj and v_proj): model, trainable, all parameters.
# `cllora params` recomputes these counts from the models' configs (tests/test_model_data.py).
STUDY_TABLE1 = (("facebook/opt-125m", 73_728, 125_313_024), ("facebook/opt-350m", 196_608, 331_393_024),
                ("facebook/opt-1.3b", 393_216, 1_316_151_296))


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _label(column: str) -> str:  # a rounds.csv column's heading (cllora.records.columns)
    return records.ROUND_TABLE[column].label


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


def report_title(root: Path, runs: list[RunRecord], title: str | None = None) -> str:
    """The page's title: `title` when given, else the sweep's recorded name, else the sweeps the
    runs belong to, else the run's own name; never a folder path of this machine."""
    if title:
        return title
    sweep = (records.read_json(root / "index.json") or {}).get("sweep", {})
    if sweep.get("name"):
        return str(sweep["name"])
    sweeps = list(dict.fromkeys(sweep_label(r) for r in runs if sweep_label(r)))
    if sweeps:
        more = f" and {len(sweeps) - 3} more" if len(sweeps) > 3 else ""
        return ", ".join(sweeps[:3]) + more
    return runs[0].name if len(runs) == 1 and runs[0].name != "." else "a cllora run"


def render_html(root: Path, runs: list[RunRecord], rows: list[dict], conds: list[dict],
                labels: dict[str, str], costs: list[dict], claims: list[dict],
                figures: dict[str, list[Figure]], names: dict[str, str] | None = None,
                title: str | None = None, rename=lambda text: text) -> str:
    """The whole page; `index.json` of a sweep at `root` (if any) describes it and adds pending
    cells. `names` names each setting (analysis.setting_names; `labels` where absent), `rename`
    turns the claim records' setting labels into those names."""
    names = names or labels
    index = records.read_json(root / "index.json") or {}
    sweep = index.get("sweep", {})
    title = report_title(root, runs, title)
    forest = "".join(_img(f) for f in figures.get("claims", []))
    parts = [f"<h1>cllora report: {_e(title)}</h1>",
             f"<p class=\"lead\">{_e(sweep.get('description', ''))}</p>" if sweep.get("description") else "",
             f"<p class=\"small\">{len(runs)} run(s), {sum(r['complete'] for r in rows)} complete · generated "
             f"{dt.datetime.now():%Y-%m-%d %H:%M} by cllora {__version__}</p>",
             NAV, claims_html(claims, max((c["n_seeds"] for c in conds), default=0), forest, rename),
             _settings_html(runs, names),
             _cost_html(costs),
             "<h2 id=\"global\">Global model: test loss per round</h2>",
             *(_img(f) for f in figures["global"]),
             "<h2 id=\"classes\">Global model: test loss per length class</h2>",
             *(_img(f) for f in figures.get("classes", [])),
             "" if figures.get("classes") else "<p>No run recorded its loss per length class "
             "(<code>test_loss_c0</code>… in rounds.csv; runs made before them lack it).</p>",
             "<h2 id=\"tables\">Final and best loss per model and scheme</h2>",
             _summary_tables(conds, names), _spread_html(seed_spread(conds), names),
             _strategies_html(strategy_rows(runs)),
             *(_img(f) for f in figures.get("strategies", [])),
             privacy_html(runs, figures.get("privacy", []), _table_html, _img),
             "<h2 id=\"fairness\">Fairness across clients</h2>",
             *(_img(f) for f in figures["fairness"]), fairness_html(conds, names, _table_html),
             "<h2 id=\"local\">Local training: per-client test loss, α vs IID</h2>",
             *(_img(f) for f in figures["local"]),
             "" if figures["local"] else "<p>No skewed run to compare.</p>",
             "<h2 id=\"partitions\">Partitions</h2><div class=\"grid\">",
             *(_img(f) for f in figures["partition"]), "</div>",
             "<h2 id=\"runs\">Runs</h2>", _runs_html(rows, index, names)]
    body = "\n".join(p for p in parts if p)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>cllora report: {_e(title)}</title><style>{CSS}</style></head>"
            f"<body><main>\n{body}\n</main></body></html>\n")


def _settings_html(runs: list[RunRecord], names: dict[str, str]) -> str:
    """The settings matrix: a row per setting (its name), a column per key that differs between
    settings; the keys every setting shares in one line below."""
    configs, _ = run_settings(runs)
    keys, rows, shared = settings_matrix(configs, {k: names.get(k, k) for k in configs})
    precisions = sorted({str(r.meta.get("precision")) for r in runs})
    devices = sorted({str(r.meta.get("device")) for r in runs})
    same = "; ".join(f"{k} {v}" for k, v in shared.items())
    head = ["Setting", *(k.replace("_", "_\u200b") for k in keys)]  # keys may break after an underscore
    matrix = _table_html(head, [[_e(x if x != "None" else "—") for x in row] for row in rows]) if keys else ""
    # a matrix wider than the window scrolls in its own box; the page keeps the window's width
    matrix = matrix.replace("<table>", "<div class=\"scroll\"><table class=\"matrix\">", 1) + ("</div>" if matrix else "")
    return ("<h2 id=\"settings\">Settings</h2>" + matrix
            + f"<p class=\"small\"><b>Every setting</b>: {_e(same)}; resolved precision "
              f"{_e(', '.join(precisions))} on {_e(', '.join(devices))}; device name; torch, CUDA; TF32, "
              f"deterministic: {_e(hardware_summary(runs))}.</p>")


def _ratio(trainable: int | None, total: int | None) -> str:
    return f"{100 * trainable / total:.4f} %" if finite(trainable) and finite(total) and total else "—"


def _cost_html(costs: list[dict]) -> str:
    rows = [[_e(model_label(c["model"])), _e(c["rank"]), _e(",".join(c["targets"])),
             fmt_count(c["trainable_params"]), fmt_count(c["total_params"]),
             _ratio(c["trainable_params"], c["total_params"]),
             fmt_mb(c["bytes_per_transfer"]) if c["bytes_per_transfer"] else "—",
             fmt_mb(c.get("adapter_bytes")), fmt_mb(c.get("traffic_per_run"))] for c in costs]
    study = [[_e(model_label(name)), f"{trainable:,}", f"{total:,}", _ratio(trainable, total),
              fmt_mb(BYTES_PER_PARAM * trainable)] for name, trainable, total in STUDY_TABLE1]
    return "\n".join([
        "<h2 id=\"cost\">Communication cost</h2>",
        "<p>What travels between clients and server: only the LoRA matrices (the study's Table 1). "
        "Bytes per transfer are fp32; a round moves one transfer down and one up per sampled client. "
        "Parameter counts are recorded by the run (— for runs recorded before they were).</p>",
        _table_html(["Model", "r", "targets", "Trainable", "All parameters", "Ratio",
                     "MB per transfer", "MB measured", "MB per run (total)"], rows,
                    numeric={1, 3, 4, 5, 6, 7, 8}),
        "<h3>The study's Table 1 (OPT, r = 2 on q_proj, v_proj)</h3>",
        _table_html(["Model", "Trainable", "All parameters", "Ratio", "MB per transfer"], study,
                    numeric={1, 2, 3, 4}),
        "<p class=\"small\"><code>cllora params facebook/opt-125m facebook/opt-350m facebook/opt-1.3b "
        "--rank 2</code> recomputes these counts from the models' configurations.</p>"])


def _spread_html(spread: list[dict], labels: dict[str, str]) -> str:
    """Seed-to-seed standard deviations per condition: the noise every verdict has to beat."""
    if not spread:
        return ""
    classes = sorted({k for s in spread for k in s["class_sd"]})
    rows = [[_e(labels.get(s["setting"], model_label(s["model"]))), _e(s["label"]), s["seeds"],
             fmt(s["final_loss_sd"]), fmt_g(s["fairness_corrected_sd"]),
             *(fmt(s["class_sd"].get(k)) for k in classes)] for s in spread]
    return ("<h3>Seed-to-seed spread</h3>" + _table_html(
        ["Setting", "Condition", "Seeds", "sd of final loss", "sd of corrected fairness",
         *(f"sd class {k}" for k in classes)], rows, numeric=set(range(2, 5 + len(classes))))
        + "<p class=\"small\">Sample standard deviation over seeds (complete runs): each seed draws its "
          "own corpus split, test texts, partition and training randomness, so this is the noise a "
          "comparison of single runs carries.</p>")


def _summary_tables(conds: list[dict], labels: dict[str, str]) -> str:
    out = []
    for setting in dict.fromkeys(c["setting"] for c in conds):
        rows = [c for c in conds if c["setting"] == setting]
        skews = [s for s in ("length", "quantity") if any(c["scheme"] == s for c in rows)] or ["iid"]
        for scheme in skews:
            sel = [c for c in rows if c["scheme"] in (scheme, "iid")]
            extra = [col for col in records.reported("table")  # the columns some condition here has
                     if any(finite(c.get(f"final_{col.name}")) for c in sel)]
            out.append(f"<h3>{_e(labels[setting])} · {scheme_title(scheme)}</h3>")
            out.append(_table_html(
                ["Condition", "Seeds", "Round-0 loss", "Final loss", "Best loss", "Best round",
                 "Overfitting", "Late trend", "Final fairness var", *(col.label for col in extra),
                 _label("local_models_test_loss_mean"), _label("local_models_var")],
                [[_e(c["label"] + ("" if c["complete"] else " (incomplete)")), c["n_seeds"],
                  fmt(c["initial_loss"]), fmt_pm(c), fmt(c["best_loss"]), c["best_round"], overfit_note(c),
                  fmt_signed(c["late_trend"]["effect"])
                  + (f" {fmt_interval(c['late_trend'])}" if finite(c["late_trend"]["low"]) else ""),
                  fmt_g(c["final_fairness_var"]), *(fmt_column(col.kind, c.get(f"final_{col.name}")) for col in extra),
                  fmt(c["local_loss"]), fmt_g(c["local_spread"])] for c in sel],
                numeric={1, 2, 3, 4, 5} | set(range(7, 11 + len(extra)))))
    out.append("<p class=\"small\">Final/best loss: global test loss (nats/token) at the last round "
               "(± std over seeds) / lowest over rounds of the seed-mean curve; overfitting: the curve's "
               "minimum comes before the last round and the last is over 0.2 % higher; a curve that only "
               "swings around a plateau does that too, so the late trend (least-squares slope of the "
               "global test loss over the last half of the rounds, nats/token a round, mean [95 % "
               "interval] over seeds) says whether it rises: about 0 on a plateau. Fairness var: "
               "variance across all clients of the global model's loss on their own test split; where "
               "recorded, also that variance less each client's squared standard error (the sampling "
               "noise of a small local test split, floored at 0), and Jain's index and the Gini "
               "coefficient of per-client perplexity. Local models' loss / spread: mean over rounds of "
               "the trained clients' local-model loss on their own split, and its variance across "
               "those clients.</p>")
    return "\n".join(out)


def _strategies_html(rows: list[dict]) -> str:
    """Strategies side by side per model and condition (only where at least two ran)."""
    if not rows:
        return ""
    out = ["<h2 id=\"strategies\">Federated strategies compared</h2>"]
    for group in dict.fromkeys((r["setting"], r["scheme"], r["alpha"]) for r in rows):
        sel = [r for r in rows if (r["setting"], r["scheme"], r["alpha"]) == group]
        name = scheme_title(sel[0]["scheme"])
        title = name if sel[0]["scheme"] == "iid" else f"{name}, {sel[0]['condition']}"
        out.append(f"<h3>{_e(model_label(sel[0]['model']))} · {_e(title)}</h3>")
        out.append(_table_html(
            ["Strategy", "Seeds", "Final loss", "vs FedAvg [95 % interval]", "Best loss", "Final fairness var",
             _label("drift_mean"), _label("drift_pairwise"), _label("agg_error"), "MB total"],
            [[_e(r["strategy"] + ("" if r["complete"] else " (incomplete)")), r["seeds"],
              fmt(r["final_loss"]) + (f" ± {r['final_loss_hw']:.4f}" if finite(r["final_loss_hw"])
                                       and r["final_loss_hw"] > 0 else ""),
              _versus_cell(r["vs_baseline"]),
              fmt(r["best"]), fmt_g(r["fairness"]) + fairness_cover(r), fmt_g(r["drift"]), fmt_g(r["pairwise"]),
              fmt_g(r["agg_error"]), fmt_mb(r["bytes"])] for r in sel],
            numeric=set(range(1, 10))))
    out.append("<p class=\"small\">Rows sorted by final loss. Final loss: mean over seeds ± the "
               "half-width of its 95 % t-interval (two or more seeds). vs FedAvg: final loss minus "
               "FedAvg's in the same condition, paired by seed, with its 95 % interval as for the "
               "claims (a t-interval over ≥ 3 seeds; fewer seeds: no verdict, and the interval shown "
               "covers test-text sampling only) and its verdict, corrected for the table's many "
               "comparisons by Holm's procedure: below 0 is better than FedAvg. Best loss: lowest over rounds, "
               "mean over seeds. Final fairness var: over the clients scored in the last round; FedSA-LoRA "
               "scores only the clients with a personal model (\"k of N clients\"), not comparable with "
               "FedAvg's over all N. Drift from start / between clients: mean over trained rounds of the "
               "mean L2 distance of the round's client adapters from the adapter each started "
               "from / from each other (rounds.csv drift_mean, drift_pairwise; A and B parameters, not "
               "their product). Aggregation error: mean over trained rounds of ‖Σ p_k B_k A_k − B̄Ā‖ / "
               "‖Σ p_k B_k A_k − B_g A_g‖ (the round's own update from the global adapter B_g A_g) (rounds.csv agg_error; 0 for FFA-LoRA). "
               "MB total: bytes up and down over the run (SCAFFOLD sends twice FedAvg's; FFA-LoRA "
               "only B; FedEx-LoRA adds a d×k residual per adapted layer to each downlink).</p>")
    return "\n".join(out)


def _versus_cell(est: dict | None) -> str:
    """'−0.0167 [−0.0194, −0.0144] lower (bootstrap)': a strategy's difference to FedAvg."""
    if not est:
        return "—"
    side = {"supported": "higher", "contradicted": "lower"}.get(est["verdict"], "inconclusive")
    how = " (t, seeds)" if est["method"].startswith("t-interval") else ""
    return _e(f"{fmt_effect(est)} {side}{how}")


def _runs_html(rows: list[dict], index: dict, names: dict[str, str]) -> str:
    """Every run with its status; a sweep's cells with no results yet as well."""
    status = {c["name"]: c for c in index.get("cells", [])}
    table = []
    for r in rows:
        entry = status.get(r["name"], {})
        state = entry.get("status") or ("done" if r["complete"] else "partial")
        err = entry.get("error")
        table.append([f"<code>{_e(r['name'])}</code>", _e(names.get(r["setting"], "")),
                      _e(state + (f": {err}" if err else "")),
                      f"{r['rounds_completed']}/{r['rounds_planned']}", fmt(r["initial_loss"]),
                      fmt(r["final_loss"]), fmt(r["best_loss"]), r["best_round"], fmt_g(r["final_fairness_var"]),
                      fmt_mb(r["total_bytes"]), f"{r['seconds'] / 60:.1f}"])
    shown = {r["name"] for r in rows}
    for name, entry in status.items():
        if name not in shown:
            err = entry.get("error")
            table.append([f"<code>{_e(name)}</code>", "", _e(entry.get("status", "pending") + (f": {err}" if err else "")),
                          f"0/{entry.get('rounds', '?')}", "", "", "", "", "", "", ""])
    return _table_html(["Run", "Setting", "Status", "Rounds", "Round-0 loss", "Final loss", "Best loss",
                        "Best round", "Final fairness var", "MB sent", "Minutes"], table,
                       numeric={4, 5, 6, 7, 8, 9, 10})
