"""Calibration of the verdicts on simulated data (pure numpy): runs of two conditions with no true
difference (or a known one), carrying both noise sources a real sweep has, are pushed through
`stats.compare`, and the share of *supported* or *contradicted* verdicts is counted. Used by the
test suite (the false-verdict rate must stay at most 6 %) and benchmarks/bench_calibration.py.

The simulated sweep, per seed: a fresh test set of `texts` texts (token counts log-uniform in
[8, 128], per-text difficulty N(3.7, 0.8²)) shared by both conditions (paired); each condition
gets a training shift N(0, train_sd²) for that seed (LoRA init, sampling, batch order) and a
per-text interaction N(0, text_sd²); condition 0 is `effect` nats higher.
"""

from __future__ import annotations

import numpy as np

from cllora.analysis.stats import CONTRADICTED, SUPPORTED, compare, verdict

TRAIN_SD = 0.01  # nats: the DESIGN notes' training noise; the null experiment measures the real one
TEXT_SD = 0.02


def simulated_seed(rng: np.random.Generator, effect: float = 0.0, texts: int = 64,
                   train_sd: float = TRAIN_SD, text_sd: float = TEXT_SD) -> tuple[list[float], list[tuple]]:
    """One seed of two conditions: their token-weighted losses and per-text (index, tokens, loss)."""
    tokens = np.exp(rng.uniform(np.log(8), np.log(128), texts)).astype(np.int64)
    difficulty = rng.normal(3.7, 0.8, texts)
    values, per_text = [], []
    for c in range(2):
        loss = difficulty + rng.normal(0.0, train_sd) + rng.normal(0.0, text_sd, texts) + (effect if c == 0 else 0.0)
        values.append(float(np.sum(loss * tokens) / np.sum(tokens)))
        per_text.append((np.arange(texts), tokens, loss))
    return values, per_text


def verdict_rates(seeds: int, reps: int, rng: np.random.Generator, effect: float = 0.0,
                  **noise) -> dict[str, float]:
    """Over `reps` simulated sweeps of `seeds` seeds, the share whose comparison 'condition 0 −
    condition 1 > 0' came out supported, and supported or contradicted ('decided': a false verdict
    when effect = 0); and with fewer seeds than a verdict needs, the share that the test-text
    interval alone would have decided (what cllora did before training noise entered verdicts)."""
    counts = {SUPPORTED: 0, CONTRADICTED: 0, "text": 0}
    for _ in range(reps):
        values: list[dict] = [{}, {}]
        texts: list[dict] = [{}, {}]
        for s in range(seeds):
            vals, per_text = simulated_seed(rng, effect, **noise)
            for c in range(2):
                values[c][s], texts[c][s] = vals[c], per_text[c]
        est = compare(values, lambda m: m[0] - m[1], texts)
        if est["verdict"] in counts:
            counts[est["verdict"]] += 1
        if est["text_interval"] and verdict(*est["text_interval"]) in (SUPPORTED, CONTRADICTED):
            counts["text"] += 1
    return {"supported": counts[SUPPORTED] / reps,
            "decided": (counts[SUPPORTED] + counts[CONTRADICTED]) / reps,
            "text_decided": counts["text"] / reps}
