"""The study-budget figures FINDINGS.md shows: one per study figure (Figs. 6–9 and the model-size
comparison), the quick-scale sweep beside the study-budget one, drawn from the published runs
(cllora.report.budget_figures; what each curve is: cllora.analysis.budget_figures).

    python scripts/study_budget_figures.py [RESULTS [OUT]]     # default: results docs
"""

from __future__ import annotations

import sys
from pathlib import Path

from cllora.analysis import load_runs
from cllora.report.budget_figures import write_study_figures


def main(argv: list[str]) -> int:
    root = Path(argv[0] if argv else "results")
    out = Path(argv[1] if len(argv) > 1 else "docs")
    if not root.is_dir():
        print(f"study_budget_figures: {root} is not a folder of runs", file=sys.stderr)
        return 2
    for path in write_study_figures(load_runs(root, log=lambda m: None), out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
