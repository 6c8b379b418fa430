"""The noise-corrected fairness a report shows: recomputed from a run's split_losses.npz with the
current estimator (cllora.metrics.corrected_fairness) where the run wrote it, else the legacy
rounds.csv column, labelled with the bias its formula leaves (LEGACY_SHORTFALL); and how many
clients a fairness statistic covers (FedSA-LoRA scores only the clients with a personal model).
"""

from __future__ import annotations

import math
import re
from typing import Sequence

import numpy as np

from cllora.analysis.stats import mean
from cllora.metrics import SE_ESTIMATOR, corrected_fairness

LEGACY_SHORTFALL = 0.68
"""The legacy standard error (the delta method's m/(m-1) Σ w² d², runs before split_losses.npz)
under-estimates the sampling variance of an m-text split's loss by about LEGACY_SHORTFALL / m
(32 % at 2 texts, 23 % at 3, 18 % at 4, 14 % at 5): measured on splits drawn from the per-text
losses of the published runs it applies to, those without split_losses.npz
(tests/test_fairness_bias.py checks the fit at 2-5 texts)."""

CURRENT = "split_losses.npz"
LEGACY = "legacy"
ROUND_KEY = re.compile(r"loss_r(\d+)$")


def split_fairness(split: dict | None, num_clients: int) -> dict[int, float]:
    """{round: noise-corrected fairness variance} from split_losses.npz's arrays (owner_r<r>,
    tokens_r<r>, loss_r<r>), with the current estimator; {} without the file."""
    out = {}
    for key in sorted(split or {}):
        m = ROUND_KEY.match(key)
        if m and f"owner_r{m.group(1)}" in split and f"tokens_r{m.group(1)}" in split:
            r = int(m.group(1))
            out[r] = corrected_fairness(split[key], split[f"tokens_r{r}"], split[f"owner_r{r}"], num_clients)
    return out


def legacy_bias(se: Sequence[float | None], texts: Sequence[int | None]) -> float:
    """By how much (nats²) a legacy noise-corrected variance over these clients reads too high:
    (N-1)/N · mean over clients of what the legacy SE² left out, SE² · u/(1-u) with
    u = LEGACY_SHORTFALL / m for an m-text split (0 for a one-text client: no estimate). NaN when
    no client has a standard error."""
    parts = []
    for s, m in zip(se, texts):
        if s is None or m is None or not math.isfinite(s):
            continue
        u = LEGACY_SHORTFALL / m if m >= 2 else 0.0
        parts.append(s * s * u / (1 - u))
    n = len(parts)
    return (n - 1) / n * float(np.mean(parts)) if n else float("nan")


def _round_bias(clients: list[dict], round_num: int, se_key: str) -> float:
    mine = [c for c in clients if c.get("round") == round_num and c.get(se_key) is not None]
    return legacy_bias([c[se_key] for c in mine], [c.get("local_test_texts") for c in mine])


def condition_fields(runs: list[dict]) -> dict:
    """A condition's fairness and local-change numbers from its run rows: means over seeds of
    local_change and the legacy biases, se_legacy if any run's is, the estimators named."""
    return {**{k: mean(r.get(k) for r in runs) for k in ("local_change", "local_spread_legacy_bias",
                                                          "fairness_legacy_bias")},
            "se_legacy": any(r.get("se_legacy") for r in runs),
            "fairness_estimator": "/".join(sorted({r.get("fairness_estimator") or "none" for r in runs}))}


def is_legacy(meta: dict) -> bool:
    """Whether a run's rounds.csv standard errors (and so its *_var_corrected columns) come from the
    legacy formula: its config.json does not name the current one."""
    return meta.get("se_estimator") != SE_ESTIMATOR


def fairness_fields(config: dict, meta: dict, rounds: list[dict], clients: list[dict], split: dict | None) -> dict:
    """A run's fairness numbers for the report: final_fairness_var_corrected (recomputed from
    split_losses.npz at rounds.csv's last round with a fairness value when the file has that
    round, else rounds.csv's value), fairness_estimator (CURRENT: recomputed, or rounds.csv's by
    the current formula; LEGACY: rounds.csv's by the legacy one), fairness_legacy_bias (a legacy
    value's estimated upward bias, nats², else None), local_spread_legacy_bias (the same for a legacy
    local_models_var_corrected, mean over trained rounds), se_legacy (`is_legacy`) and
    fairness_clients (clients with a finite loss in that round; FedSA-LoRA scores only those with
    a personal model)."""
    scored = [r for r in rounds if r.get("fairness_var_corrected") is not None]
    last = scored[-1]["round"] if scored else None
    recomputed = split_fairness(split, int(config.get("clients") or 0))
    local = [_round_bias(clients, r["round"], "local_model_test_se") for r in rounds
             if r.get("round", 0) >= 1 and r.get("local_models_var_corrected") is not None]
    local = [b for b in local if math.isfinite(b)] if is_legacy(meta) else []
    finite_clients = sum(1 for c in clients if c.get("round") == last
                         and c.get("global_model_local_test_loss") is not None
                         and math.isfinite(c["global_model_local_test_loss"]))
    out = {"fairness_clients": finite_clients or None, "se_legacy": is_legacy(meta),
           "local_spread_legacy_bias": float(np.mean(local)) if local else None}
    if last is not None and last in recomputed:
        return {**out, "final_fairness_var_corrected": recomputed[last], "fairness_estimator": CURRENT,
                "fairness_legacy_bias": None}
    if not is_legacy(meta):
        return {**out, "fairness_estimator": CURRENT if last is not None else None, "fairness_legacy_bias": None}
    bias = _round_bias(clients, last, "global_model_local_test_se") if last is not None else float("nan")
    return {**out, "fairness_estimator": LEGACY if last is not None else None,
            "fairness_legacy_bias": bias if math.isfinite(bias) else None}
