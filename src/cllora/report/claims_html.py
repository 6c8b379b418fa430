"""The report page's claims section: the forest plot first (cllora.report.forest), then one row
per claim (verdict, effect [interval], seeds, what the interval excludes; a line per budget where
it was tested at several); the claim itself is the summary of a `<details>` that unfolds its
evidence per setting as a sub-table (setting name, each condition's mean ± sd, effect
[interval], seeds, deciding or shown), then how a verdict is reached. Everything is read from the
claim records as claims.json holds them; a comparison's setting label is shown as the setting's
name (`name`)."""

from __future__ import annotations

import html
from typing import Any, Callable

from cllora.analysis.claims import records_by_claim
from cllora.analysis.plans import budget_name
from cllora.analysis.stats import MIN_SEEDS, finite, fmt_effect, fmt_interval, fmt_signed, fmt_verdict_interval

Name = Callable[[str], str]  # a setting label (or a text holding some) -> the same with names


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def pending(claims: list[dict]) -> list[dict]:
    """The records with no comparison of a claim that another budget's record also holds: a
    budget whose sweeps have not yet run what the claim needs (listed in one line, not a row each)."""
    return [c for records in records_by_claim(claims).values() if len({r.get("budget") for r in records}) > 1
            for c in records if not c["comparisons"]]


def claims_html(claims: list[dict], max_seeds: int, forest: str, name: Name) -> str:
    """The section: `forest` is the forest plot's <figure> ("" without one). Where the claims come
    at several budgets, each row names its budget; a budget's records that cannot be tested yet
    (`pending`) are one line below the table."""
    head = "".join(f"<th>{h}</th>" for h in ("Claim", "Verdict", "Effect [95 % interval]", "Seeds",
                                               "What the interval excludes"))
    waiting = pending(claims)
    several = len({c.get("budget") for c in claims}) > 1
    groups = records_by_claim([c for c in claims if c not in waiting])  # one row per claim, a line per budget
    body = "".join(_claim_row(records, name, several) for records in groups.values())
    later = ""
    for budget in dict.fromkeys(c.get("budget") for c in waiting):
        mine = "; ".join(_e(c["claim"]) for c in waiting if c.get("budget") == budget)
        later += (f"<p class=\"small\"><b>Not testable yet at the {_e(budget_name(budget))}</b> "
                  f"(no complete runs of the conditions each needs; its sweeps are running or still to "
                  f"run): {mine}.</p>")
    return ("<h2 id=\"claims\">Claims (the study's, then cllora's own), tested on these runs</h2>\n"
            + forest + f"\n<table class=\"claims\"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>\n"
            + later + verdict_rule(max_seeds))


def _claim_row(records: list[dict], name: Name, budget: bool = False) -> str:
    """One claim's row: its records at each budget stacked in every cell, a line each, the verdict's
    line led by its budget ("quick", "study") where the report has several (`budget`), so the quick
    scale and the study budget read side by side."""
    def lines(cell: Callable[[dict], str], tagged: bool = False) -> str:
        tag = (lambda c: f"<span class=\"small\">{_e(c.get('budget'))}</span> ") if tagged and budget else (lambda c: "")
        if len(records) == 1:
            return tag(records[0]) + cell(records[0])
        return "<br>".join(f"<span style=\"white-space:nowrap\">{tag(c)}{cell(c)}</span>" for c in records)
    cells = [_details(records, name),
             lines(lambda c: f"<span class=\"verdict {c['verdict'].replace(' ', '-')}\">{_e(c['verdict'])}</span>",
                   tagged=True),
             lines(lambda c: f"<span class=\"effect\">{_e(_effect(c))}</span>"),
             lines(lambda c: _e(c["seeds"] or "—")),
             lines(lambda c: f"<span class=\"effect\">{_e(excludes(c))}</span>")]
    return "<tr>" + "".join(f"<td>{x}</td>" for x in cells) + "</tr>"


def _effect(c: dict) -> str:
    if not c["comparisons"] or c.get("effect") is None:
        return "—"
    return f"{fmt_signed(c['effect'], c['unit'])} {fmt_verdict_interval(c, c['unit'])}"


def excludes(c: dict) -> str:
    """What the headline interval rules out, in words: the claim's own field where the record has
    one ('excludes'), else from its verdict and interval."""
    if c.get("excludes"):
        return str(c["excludes"])
    if c["verdict"] == "not testable" or not c["comparisons"]:
        return "— (not testable: its evidence says why)"
    if c.get("effect") is None:
        return "— (no headline: its evidence says why)"
    if not (finite(c.get("low")) and finite(c.get("high"))):
        return f"nothing yet: fewer than {MIN_SEEDS} seeds"
    return f"outside {fmt_interval(c, c['unit'])}"


def conditions_of(c: dict, i: int) -> str:
    """The conditions' means of comparison i: its recorded detail, else (older claims.json) the
    part of its evidence line between 'label: ' and '; effect', else ""."""
    comp = c["comparisons"][i]
    if comp.get("detail"):
        return str(comp["detail"])
    line = next((x for x in c["evidence"] if x.startswith(comp["label"] + ": ")), "")
    detail = line[len(comp["label"]) + 2:]
    cut = detail.rfind("; effect ")
    return detail[:cut] if cut >= 0 else ""


def notes_of(c: dict) -> list[str]:
    """The claim's evidence lines that belong to no one comparison (why it is not testable, a
    missing headline, its planning MDE, an equivalence test)."""
    labels = tuple(comp["label"] + ": " for comp in c["comparisons"])
    return [x for x in c["evidence"] if not (labels and x.startswith(labels))]


def _details(records: list[dict], name: Name) -> str:
    """The claim as the summary of a <details> that unfolds each budget's evidence in turn (the
    budgets are named in the verdict cell)."""
    c = records[0]
    summary = f"<summary>{_e(c['claim'])} <span class=\"small\">({_e(c['source'])})</span></summary>"
    if len(records) == 1:
        return f"<details>{summary}{_evidence(c, name)}</details>"
    return f"<details>{summary}" + "".join(
        f"<p class=\"small\"><b>At the {_e(budget_name(r.get('budget')))}:</b></p>"
        + _evidence(r, name) for r in records) + "</details>"


def _evidence(c: dict, name: Name) -> str:
    """One claim record's evidence: its comparisons per setting as a sub-table, its notes, its test."""
    how = _e(c["test"]) + (f"; interval: {_e(c['method'])}" if c["method"] else "")
    notes = "".join(f"<p class=\"small\">{_e(name(x))}</p>" for x in notes_of(c))
    if not c["comparisons"]:
        return f"{notes}<p class=\"small\">{how}</p>"
    deciding = sum(bool(x["decides"]) for x in c["comparisons"])
    rows = []
    for i, comp in enumerate(c["comparisons"]):
        role = "deciding" if comp["decides"] else "shown"
        rows.append(f"<tr class=\"{role}\"><td>{_e(name(comp['label']))}</td><td>{_e(name(conditions_of(c, i)))}</td>"
                    f"<td class=\"effect\">{_e(fmt_effect(comp, c['unit']))}</td>"
                    f"<td>{_e(comp.get('verdict', ''))}</td><td class=\"num\">{_e(comp.get('seeds') or 0)}</td>"
                    f"<td>{role}</td></tr>")
    table = ("<table class=\"evidence\"><thead><tr><th>Setting</th><th>Conditions (mean ± sd)</th>"
             "<th>Effect [95 % interval]</th><th>Verdict</th><th>Seeds</th><th>Role</th></tr></thead>"
             f"<tbody>{''.join(rows)}</tbody></table>")
    n = len(c["comparisons"])
    return (f"<p class=\"small\">{n} setting{'s' if n != 1 else ''}, {deciding} "
            f"deciding:</p>{table}{notes}<p class=\"small\">{how}. Shown settings (not the study's own: other strategies, "
            f"replicates, DP, natural clients) never decide a verdict.</p>")


def _seeds(n: int) -> str:
    return f"{n} seed" + ("" if n == 1 else "s")


def verdict_rule(max_seeds: int) -> str:
    """How the verdicts were reached, and what fewer than MIN_SEEDS seeds mean for them."""
    rule = (f"<p class=\"small\">Each claim is an effect predicted to be positive (or, for “little "
            f"effect”, within ±5 %), estimated per seed with every condition of that seed sharing "
            f"its data, then averaged over seeds. Each seed draws its own test texts, training texts, "
            f"partition and training randomness, so the spread of the per-seed effects holds both "
            f"test-text sampling and training noise. With {MIN_SEEDS} or more seeds the 95 % "
            f"t-interval of their mean decides: <b>supported</b> when it lies on the claim's side, "
            f"<b>contradicted</b> when it lies entirely on the other side, <b>inconclusive</b> when "
            f"it crosses the boundary. With fewer seeds the verdict is inconclusive, always; the "
            f"interval shown is then a paired bootstrap over the test texts, which covers test-text "
            f"sampling only. What an inconclusive verdict tells is its interval: effects outside it "
            f"are excluded at 95 %. Verdicts use a sweep's planned seeds (its plan.toml); seeds beyond "
            f"the plan are shown as an extension, never a verdict; a sweep without a plan is said to "
            f"be unplanned. <b>Planning MDE</b>: the effect the planned seeds detect with 80 % power "
            f"at the plan's planning sd (noncentral t), a planning number only. Each claim's family "
            f"is fixed in advance: Holm over its own deciding comparisons, or intersection-union "
            f"(all must agree); its headline is the setting it declares. On simulated null data "
            f"this rule decides at most 6 % of comparisons at 1, 2, 3 and 5 seeds "
            f"(tests/test_calibration.py). Only the study's own setting (FedAvg, replicate 0) decides "
            f"a study claim; other strategies are shown as rows, not a veto. Also in "
            f"<code>claims.json</code>.</p>")
    if 0 < max_seeds < MIN_SEEDS:
        verb = "was" if max_seeds == 1 else "were"
        rule += (f"<p class=\"small\"><b>{_seeds(max_seeds)} per condition {verb} run: every verdict "
                 f"is inconclusive.</b> Run {MIN_SEEDS} or more (<code>--grid seed=0,1,2</code>).</p>")
    return rule
