"""The mechanism numbers FINDINGS.md quotes, from published run files: for each setting with a
skewed condition and IID, the per-seed paired difference (skewed − IID) of the aggregation error,
client drift (means over trained rounds) and the final noise-corrected fairness, each as mean
[95 % t-interval] over the seeds both ran (complete runs only).

    python scripts/findings_why.py results
"""

from __future__ import annotations

import sys
from pathlib import Path

from cllora.analysis import load_runs
from cllora.analysis.conditions import setting_key, setting_labels
from cllora.analysis.stats import finite, fmt_effect, mean, t_interval

KEYS = ("agg_error", "drift_mean", "fairness_var_corrected")


def per_run(run) -> dict:
    trained = [r for r in run.rounds if r.get("round", 0) >= 1]
    last = [r for r in run.rounds if r.get("fairness_var_corrected") is not None]
    return {"agg_error": mean(r.get("agg_error") for r in trained),
            "drift_mean": mean(r.get("drift_mean") for r in trained),
            "fairness_var_corrected": last[-1]["fairness_var_corrected"] if last else None}


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "results")
    runs = [r for r in load_runs(root, log=lambda m: None) if r.complete]
    labels = setting_labels({setting_key(r.config): r.config for r in runs})
    by = {}
    for run in runs:
        cfg = run.config
        by.setdefault(setting_key(cfg), {}).setdefault((cfg["scheme"], cfg.get("alpha")), {})[cfg["seed"]] = per_run(run)
    for setting, conds in by.items():
        iid = next((v for (scheme, _), v in conds.items() if scheme == "iid"), None)
        if iid is None:
            continue
        for (scheme, alpha), seeds in sorted(conds.items(), key=str):
            if scheme == "iid":
                continue
            common = sorted(set(seeds) & set(iid))
            parts = []
            for key in KEYS:
                both = [s for s in common if finite(seeds[s][key]) and finite(iid[s][key])]
                diffs = [seeds[s][key] - iid[s][key] for s in both]
                m, low, high = t_interval(diffs)
                levels = f"{mean(seeds[s][key] for s in both):.4g} vs {mean(iid[s][key] for s in both):.4g}" \
                    if diffs else "n/a"
                fewer = f" ({len(both)} seeds)" if len(both) < len(common) else ""
                parts.append(f"{key}{fewer} {levels}: {fmt_effect({'effect': m, 'low': low, 'high': high})}")
            print(f"{labels[setting]} | {scheme} α={alpha} vs IID, {len(common)} seeds | " + " | ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
