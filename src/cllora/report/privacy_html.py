"""The report page's client-level DP section: utility against ε, the loss per length class with DP
against without, clipping by the clients' dominant length class, and every DP run's ε. Shown only
when some run used DP; the numbers come from cllora.analysis.privacy. The page's table and figure
helpers are passed in by cllora.report.html, so the two modules do not import each other."""

from __future__ import annotations

import html
from typing import Any, Callable

from cllora.records import ROUND_TABLE
from cllora.analysis.privacy import (
    NOISE_LABELS,
    any_dp,
    class_gaps,
    clip_table,
    fmt_epsilon,
    run_table,
    seeded_share,
    utility,
)
from cllora.analysis.runs import RunRecord
from cllora.analysis.stats import fmt, fmt_g, fmt_interval, fmt_signed

Table = Callable[..., str]  # html._table_html(head, rows, numeric)


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def privacy_html(runs: list[RunRecord], figures: list, table: Table, img: Callable[[Any], str]) -> str:
    """The section, or "" when no run used DP."""
    if not any_dp(runs):
        return ""
    return "\n".join(["<h2 id=\"privacy\">Client-level differential privacy</h2>", *(img(f) for f in figures),
                      _utility_html(runs, table), _gaps_html(runs, table), _clip_html(runs, table),
                      _runs_html(runs, table)])


def _estimate(m: float | None, low: float | None, high: float | None, signed: bool = False) -> str:
    head = fmt_signed(m) if signed else fmt(m)
    if low is None or high is None:
        return head
    return f"{head} {fmt_interval({'low': low, 'high': high})}" if signed else f"{head} [{fmt(low)}, {fmt(high)}]"


def _utility_html(runs: list[RunRecord], table: Table) -> str:
    rows = []
    for entry in utility(runs):
        for line in entry["lines"]:
            points = [(fmt_epsilon(p["epsilon"]), p) for p in line["points"]]
            points += [("no DP", line["no_dp"])] if line["no_dp"] else []
            rows += [[_e(entry["label"]), _e(line["label"]), eps, len(p["seeds"]),
                      _estimate(p["mean"], p["low"], p["high"])] for eps, p in points]
    return ("<h3>Utility against ε</h3>" + table(["Setting", "Condition", "ε", "Seeds", "Final loss [95 % interval]"],
                                                 rows, numeric={2, 3, 4})
            + "<p class=\"small\">Final global test loss (nats/token), mean over complete seeds with the 95 % "
              "t-interval over seeds (two or more). ε: after the last round, at the run's δ; ∞: clipping and "
              "the fixed denominator without noise; no DP: the same condition run without DP.</p>")


def _gaps_html(runs: list[RunRecord], table: Table) -> str:
    gaps = class_gaps(runs)
    if not gaps:
        return ("<h3>Loss per length class, DP minus without</h3><p>No condition has both DP runs and a "
                "baseline (runs without DP, or clipping-only ones at ε = ∞) that recorded "
                "<code>test_loss_c0</code>….</p>")
    classes = sorted({c for g in gaps for c in g["classes"]})
    rows = [[_e(g["label"]), _e(g["condition"]), fmt_epsilon(g["epsilon"]), _e(g["baseline"]),
             max(d["n"] for d in g["classes"].values()),
             *(_estimate(d["mean"], d["low"], d["high"], signed=True) if d else "—"
               for d in (g["classes"].get(c) for c in classes))] for g in gaps]
    return ("<h3>Loss per length class, DP minus without</h3>"
            + table(["Setting", "Condition", "ε", "Against", "Seeds", *(f"Δ class {c}" for c in classes)], rows,
                    numeric={2, 4, *range(5, 5 + len(classes))})
            + "<p class=\"small\">Final test loss of each length class with DP minus the same condition "
              "without it, paired by seed (the seeds both ran), with the 95 % t-interval of the mean "
              "difference: above 0, DP costs that class more. Against: the runs without DP, or, where "
              "there are none, the clipping-only runs (ε = ∞), so the difference is the noise's.</p>")


def _clip_html(runs: list[RunRecord], table: Table) -> str:
    rows = [[_e(r["label"]), _e(r["condition"]), fmt_epsilon(r["epsilon"]), _e(r["class"]), r["seeds"], r["rounds"],
             fmt(r["clipped_share"], 3), fmt(r["clip_factor"], 3)] for r in clip_table(runs)]
    return ("<h3>Clipping by the client's dominant length class</h3>"
            + table(["Setting", "Condition", "ε", "Class", "Seeds", "Rounds", ROUND_TABLE["dp_clipped_share"].label,
                     ROUND_TABLE["dp_clip_factor_mean"].label], rows, numeric={2, 4, 5, 6, 7})
            + "<p class=\"small\">Each sampled client's update is clipped to norm C; its clip factor is "
              "min(1, C / ‖Δ‖) (1: not clipped). Per class of the clients' dominant length class (the class "
              "most of their training texts fall in; all: every sampled client): the share of the round's "
              "clients of that class that were clipped and their mean clip factor, averaged over the rounds "
              "that sampled such a client, then over seeds. Rounds: those rounds, over all seeds. A lower "
              "factor for the long classes means DP shrinks long-text clients' updates more.</p>")


def _runs_html(runs: list[RunRecord], table: Table) -> str:
    rows = [[f"<code>{_e(r['name'])}</code>" + ("" if r["complete"] else " (incomplete)"), _e(r["condition"]),
             r["seed"], fmt_g(r["clip"]), fmt_g(r["noise_multiplier"]), fmt_g(r["delta"]),
             fmt_epsilon(r["target_epsilon"]), fmt_epsilon(r["epsilon"]), fmt_g(r["noise_std"]), fmt(r["final_loss"]),
             _e(NOISE_LABELS[r["noise_source"]])]
            for r in run_table(runs)]
    seeded, total = seeded_share(runs)
    warning = (f"<p><strong>{seeded} of {total} DP runs drew seeded noise</strong> (their config.json has "
               "no <code>dp_noise_source</code>, or says <code>seeded</code>): anyone with the run's "
               "config.json can regenerate and subtract that noise and knows the client sample, so these "
               "runs are simulations of DP's utility cost and carry no privacy guarantee.</p>") if seeded else ""
    return ("<h3>DP runs</h3>" + warning + table(["Run", "Condition", "Seed", "C", "z", "δ", "ε target", "Final ε",
                                         ROUND_TABLE["dp_noise_std"].label, "Final loss", "Noise"], rows,
                                         numeric=set(range(2, 10)))
            + "<p class=\"small\">C: clip norm; z: noise multiplier (set, or solved for the ε target: "
              "recorded noise std × clients per round / C); δ: the run's, or the default min(1/N<sup>1.1</sup>, "
              "1e-5); final ε: <code>dp_epsilon</code> of the last recorded round; noise std on the mean: "
              "zC / clients per round. Noise: where the noise and the client sample came from; ε covers "
              "only the sequence of released global adapters, with the sample secret, and only for "
              "secure runs (the privacy page of the docs, \"What is guaranteed\", lists every file and "
              "column a run writes outside it).</p>")
