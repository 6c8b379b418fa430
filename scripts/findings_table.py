"""Print the claims of a report's claims.json as the markdown table FINDINGS.md shows: claim,
budget, source, the headline's effect [95 % interval] on the planned seeds, seeds, verdict, the
claim's family, the headline's extension (seeds beyond the plan: no verdict) and the planning MDE.

    python scripts/findings_table.py results/claims.json
"""

from __future__ import annotations

import json
import sys

from cllora.analysis.stats import fmt_effect, fmt_mde


def row(claim: dict) -> str:
    unit = claim["unit"]
    effect = fmt_effect(claim, unit) if claim["comparisons"] and claim["effect"] is not None else "—"
    mde = fmt_mde(claim, unit) if claim.get("mde") is not None else ""
    ext = claim.get("extension")
    extension = f"{ext['seeds']} seeds: {fmt_effect(ext, unit)}" if ext else ""
    return (f"| {claim['claim']} | {claim.get('budget') or '—'} | {claim['source']} | {effect} | "
            f"{claim['seeds'] or '—'} | {claim['verdict']} | {claim['family']} | {extension} | {mde} |")


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    with open(sys.argv[1]) as fh:
        claims = json.load(fh)["claims"]
    print("| claim | budget | source | effect [95 % interval] | planned seeds | verdict | family | "
          "extension (not planned) | planning MDE |")
    print("|---|---|---|---|---:|---|---|---|---:|")
    for claim in claims:
        print(row(claim))
    return 0


if __name__ == "__main__":
    sys.exit(main())
