"""The claims section with claims at two budgets: each row names its budget, and a budget's claims
that cannot be tested yet are one line under the table instead of a row each."""

from __future__ import annotations

from cllora.report.claims_html import claims_html, pending


def record(cid: str, budget: str, tested: bool) -> dict:
    comp = {"label": "s", "effect": 0.1, "low": 0.0, "high": 0.2, "seeds": 3, "verdict": "supported",
            "decides": True, "detail": "a vs b"}
    return {"id": cid, "claim": f"claim {cid}", "source": "Fig. 6", "budget": budget, "unit": "",
            "verdict": "supported" if tested else "not testable", "effect": 0.1 if tested else None,
            "low": 0.0 if tested else None, "high": 0.2 if tested else None, "seeds": 3 if tested else None,
            "comparisons": [comp] if tested else [], "evidence": [], "test": "t", "method": ""}


def test_untested_records_of_a_claim_tested_elsewhere_fold_into_one_line():
    claims = [record("a", "quick", True), record("b", "quick", False),
              record("a", "study", False), record("c", "study", True)]
    assert [(c["id"], c["budget"]) for c in pending(claims)] == [("a", "study")]
    page = claims_html(claims, 3, "", str)
    table, after = page.split("</tbody></table>\n", 1)  # the claims table, then what follows it
    assert table.count("<tr><td><details>") == 3  # a (quick only: its study record is pending), b, c
    rows = table.split("<tr><td><details>")[1:]
    assert [r.split("</details></td><td>", 1)[1].split("</td>", 1)[0].split("<span class=\"verdict")[0]
            for r in rows] == ['<span class="small">quick</span> '] * 2 + ['<span class="small">study</span> ']
    assert "(Fig. 6)" in rows[0] and "quick scale" not in table
    assert "Not testable yet at the study budget</b>" in after and "claim a." in after
    assert "claim b" in table  # not testable at its only budget: still a row, with its reason


def test_one_budget_names_none():
    page = claims_html([record("a", "quick", True)], 3, "", str)
    assert "quick scale" not in page and "Not testable yet" not in page
    assert ">quick<" not in page  # a lone budget is not named in the verdict cell either


def test_a_claim_tested_at_two_budgets_is_one_row_with_a_line_per_budget():
    study = {**record("a", "study", True), "verdict": "inconclusive", "effect": -0.05, "low": -0.1, "high": 0.0}
    page = claims_html([record("a", "quick", True), study, record("c", "quick", True)], 3, "", str)
    table = page.split("</tbody></table>\n", 1)[0]
    assert table.count("<tr><td><details>") == 2  # claim a (both budgets) and claim c
    row = table.split("<tr><td><details>")[1]
    assert "(Fig. 6)</span></summary>" in row
    assert row.count("<b>At the quick scale:</b>") == 1 and row.count("<b>At the study budget:</b>") == 1
    verdicts = row.split("</details></td><td>", 1)[1].split("</td>", 1)[0]
    assert verdicts.index(">quick<") < verdicts.index("supported") < verdicts.index(">study<") \
        < verdicts.index("inconclusive")
    assert "+0.1000 [+0.0000, +0.2000]" in row and "-0.0500 [-0.1000, +0.0000]" in row
