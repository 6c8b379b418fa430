"""The communication-cost table of a report, from the parameter counts each run recorded in its
config.json at run time (pure: no model is loaded)."""

from __future__ import annotations

from cllora.aggregate.traffic import BYTES_PER_PARAM
from cllora.analysis.runs import RunRecord
from cllora.analysis.stats import mean


def cost_table(runs: list[RunRecord]) -> list[dict]:
    """One row per (model, rank, targets): the trainable and total parameter counts recorded in
    config.json at run time (None for runs recorded before them), fp32 bytes per transfer, the
    measured adapter bytes and the mean traffic of a run."""
    groups: dict[tuple, list[RunRecord]] = {}
    for rec in runs:
        cfg = rec.config
        groups.setdefault((cfg["model"], cfg["rank"], tuple(cfg["targets"])), []).append(rec)
    rows = []
    for (model, rank, targets), recs in groups.items():
        counted = next((r.meta for r in recs if r.meta.get("trainable_params")), {})
        trainable, total = counted.get("trainable_params"), counted.get("total_params")
        rows.append({
            "model": model, "rank": rank, "targets": list(targets),
            "trainable_params": trainable, "total_params": total,
            "ratio": trainable / total if trainable and total else None,
            "bytes_per_transfer": BYTES_PER_PARAM * trainable if trainable else None,
            "adapter_bytes": recs[0].meta.get("adapter_bytes"),
            "traffic_per_run": mean(r.rounds[-1].get("bytes_cumulative") for r in recs if r.rounds)})
    return rows
