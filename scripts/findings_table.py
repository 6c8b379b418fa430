"""Print the claims of a report's claims.json as the markdown table FINDINGS.md shows: claim,
source, effect [95 % interval], seeds, verdict and the smallest detectable effect.

    python scripts/findings_table.py results/claims.json
"""

from __future__ import annotations

import json
import sys

from cllora.analysis.stats import fmt_effect, fmt_mde


def row(claim: dict) -> str:
    unit = claim["unit"]
    effect = fmt_effect(claim, unit) if claim["comparisons"] and claim["effect"] is not None else "—"
    mde = fmt_mde(claim, unit) if claim["verdict"] == "inconclusive" else ""
    return f"| {claim['claim']} | {claim['source']} | {effect} | {claim['seeds'] or '—'} | {claim['verdict']} | {mde} |"


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    with open(sys.argv[1]) as fh:
        claims = json.load(fh)["claims"]
    print("| claim | source | effect [95 % interval] | seeds | verdict | smallest detectable |")
    print("|---|---|---|---:|---|---:|")
    for claim in claims:
        print(row(claim))
    return 0


if __name__ == "__main__":
    sys.exit(main())
