"""The report page's note on the noise-corrected fairness: per condition, which estimator gave its
numbers (recomputed from split_losses.npz, or the legacy rounds.csv column with the upward bias its
formula leaves, cllora.analysis.fairness), and how many clients a strategy's fairness covers
(FedSA-LoRA scores only the clients with a personal model). The page's table helper is passed in
by cllora.report.html, so the two modules do not import each other."""

from __future__ import annotations

import html
from typing import Any, Callable

from cllora.analysis.conditions import model_label
from cllora.analysis.fairness import LEGACY, LEGACY_SHORTFALL
from cllora.analysis.stats import finite, fmt_g

Table = Callable[..., str]  # html._table_html(head, rows, numeric)


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _estimator(kind: str, bias: float | None) -> str:
    if LEGACY not in (kind or ""):
        return "current (split_losses.npz or this version's rounds.csv)"
    return "legacy estimator" + (f", biased upwards by about {bias:+.4f} nats²" if finite(bias) else "")


def fairness_html(conds: list[dict], labels: dict[str, str], table: Table) -> str:
    """Per condition: the final noise-corrected fairness of the global model and the mean corrected
    spread of the local models, each with the estimator behind it; "" without any."""
    rows = [[_e(labels.get(c["setting"], model_label(c["model"]))), _e(c["label"]), c["n_seeds"],
             fmt_g(c.get("final_fairness_var_corrected")), _e(_estimator(c.get("fairness_estimator"), c.get("fairness_legacy_bias"))),
             fmt_g(c.get("local_spread_corrected")),
             _e(_estimator(LEGACY if c.get("se_legacy") else "", c.get("local_spread_legacy_bias")))]
            for c in conds if finite(c.get("final_fairness_var_corrected")) or finite(c.get("local_spread_corrected"))]
    if not rows:
        return ""
    return ("<h3>Noise-corrected fairness and its estimator</h3>" + table(
        ["Setting", "Condition", "Seeds", "Global model: corrected fairness (final)", "Estimator",
         "Local models: corrected spread (mean over rounds)", "Estimator"], rows, numeric={2, 3, 5})
        + "<p class=\"small\">Corrected = variance across clients minus what their splits' sampling noise "
          "adds (not floored: it can be below 0). Runs that wrote split_losses.npz are recomputed with the "
          "current standard error (docs/method.md), unbiased to within 5 % of the sampling variance for "
          "2–5-text splits. Older runs carry the legacy one (the delta method), which leaves about "
          f"{LEGACY_SHORTFALL:g}/m of an m-text split's sampling variance in: the bias shown is that "
          "estimate, from each run's clients.csv standard errors and split sizes.</p>")


def fairness_cover(row: dict) -> str:
    """' (k of N clients)' after a strategy's fairness when it covers fewer clients than the run has
    (FedSA-LoRA: only those with a personal model), else ''."""
    k, n = row.get("fairness_clients"), row.get("clients")
    return f" ({k:.0f} of {n} clients)" if finite(k) and n and k < n else ""
