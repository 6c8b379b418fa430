"""The HTML report of a run or a sweep (`cllora report DIR`): `write_report` takes the numbers from
`cllora.analysis` (runs as rows, statistics, claims with effect, 95 % interval, seeds and verdict),
draws the figures (figures.py, draw.py) and writes one self-contained report.html (html.py),
claims.json (the verdicts as data) and every figure as PNG and SVG under DIR/figures/.
No torch or model code: parameter counts come from each run's config.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from cllora.analysis import claims_document, load_runs, tables
from cllora.analysis.setting_names import rename, run_settings, setting_names
from cllora.records import atomic_write_text, check_output_dir, write_json

__all__ = ["write_report"]


def write_report(root: str | Path, log: Callable[[str], None] = print, title: str | None = None) -> Path:
    """Write root/report.html, root/claims.json and root/figures/*.png|svg for the run(s) at or
    under `root`; the page is titled `title`, else by its sweep (html.report_title)."""
    from cllora.report.draw import draw_figures  # lazy: matplotlib, scipy
    from cllora.report.html import render_html  # lazy: matplotlib, scipy

    root = Path(root)
    runs = load_runs(root, log)
    check_output_dir(root, "report DIR")  # before drawing: a folder that cannot be written is one sentence
    rows, conds, labels, costs, claims = tables(runs)
    settings = run_settings(runs)
    names = setting_names(*settings)  # the page names settings; claims.json keeps the records' labels
    short = setting_names(*settings, short=True)  # the forest's row labels: sweep and what varies in it

    def named(text: str, to: dict[str, str] = names) -> str:
        return rename(text, labels, to)
    figures = draw_figures(root, runs, conds, {k: names.get(k, v) for k, v in labels.items()}, log, claims,
                           lambda text: named(text, short))
    write_json(root / "claims.json", claims_document(claims))
    out = root / "report.html"
    atomic_write_text(out, render_html(root, runs, rows, conds, labels, costs, claims, figures, names, title, named))
    return out
