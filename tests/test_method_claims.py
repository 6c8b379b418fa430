"""cllora's claims about federated methods (report.method_claims) and the long-context claim, on
hand-built condition rows, with calibration on simulated null data: the optimizers' claim must
stay at most 6 % false verdicts although it makes six comparisons against one shared FedAvg, and
this test must be able to fail (the same comparisons without Holm's correction over-claim)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cllora.analysis import conditions, own_claims
from cllora.analysis.method_claims import claim_adaptive_beats_fedavg, claim_exact_aggregation_recovers
from cllora.analysis.stats import CONTRADICTED, INCONCLUSIVE, SUPPORTED
from cllora.analysis.verdicts import NOT_TESTABLE

MAX_FALSE = 0.06
JITTER = (0.004, -0.003, -0.001, 0.002, 0.0)  # training noise per seed, shared by nothing


def setting(strategy="fedavg", **extra):
    return json.dumps({"model": "m", "strategy": strategy, **extra}, sort_keys=True)


def cond(scheme, final, strategy="fedavg", seeds=3, alpha=0.1, finals=None, **extra):
    """A condition row (the fields the claims read); each seed's final loss is `final` plus its
    own jitter, or `finals[seed]`."""
    values = finals if finals is not None else [final + JITTER[s] * (1 + len(strategy) % 3) for s in range(seeds)]
    runs = [{"seed": s, "final_loss": float(v), "texts": None} for s, v in enumerate(values)]
    a = None if scheme == "iid" else alpha
    return {"setting": setting(strategy, **extra), "model": "m", "scheme": scheme, "alpha": a,
            "label": conditions.condition_label(scheme, a), "final_loss": float(np.mean(values)),
            "final_loss_std": float(np.std(values, ddof=1)) if len(values) > 1 else None,
            "n_seeds": len(values), "runs": runs}


def strategy_grid(losses: dict[tuple[str, str], float], **extra) -> list[dict]:
    return [cond(scheme, final, strategy, **extra) for (strategy, scheme), final in losses.items()]


def test_adaptive_optimizers_beat_fedavg():
    better = strategy_grid({(s, c): 3.50 - (0.05 if s != "fedavg" else 0.0)
                            for s in ("fedavg", "fedadam", "fedyogi") for c in ("length", "iid")})
    claim = claim_adaptive_beats_fedavg(better)
    assert claim["verdict"] == SUPPORTED and claim["family"] == "intersection-union"
    assert claim["headline"] is None and any("no headline" in e for e in claim["evidence"])  # no sweep declared
    assert len(claim["comparisons"]) == 4 and all(c["p_holm"] is None for c in claim["comparisons"])
    assert any("fedyogi" in e and "α = 0.1" in e for e in claim["evidence"])
    # the declared headline (study-strategies, FedAdam under length skew), whatever the order
    for row in better:
        for run in row["runs"]:
            run.update(sweep="study-strategies-quick", sweep_dir="study-strategies")
    head = claim_adaptive_beats_fedavg(better[::-1])
    assert head["headline"].endswith("α = 0.1, fedadam") and head["seeds"] == 3
    assert head["effect"] == pytest.approx(0.05, abs=0.01)  # FedAvg minus the optimizer: > 0 supports
    # intersection-union: one optimizer worse under IID and one better under length skew disagree
    worse = strategy_grid({("fedavg", "length"): 3.5, ("fedadam", "length"): 3.45,
                           ("fedavg", "iid"): 3.5, ("fedadam", "iid"): 3.60})
    assert claim_adaptive_beats_fedavg(worse)["verdict"] == INCONCLUSIVE
    all_worse = strategy_grid({("fedavg", "length"): 3.5, ("fedadam", "length"): 3.60,
                               ("fedavg", "iid"): 3.5, ("fedadam", "iid"): 3.60})
    assert claim_adaptive_beats_fedavg(all_worse)["verdict"] == CONTRADICTED
    # FedProx alone is no adaptive optimizer; FedAvg alone compares with nothing
    assert claim_adaptive_beats_fedavg(strategy_grid({("fedavg", "iid"): 3.5, ("fedprox", "iid"): 3.4}))[
        "verdict"] == NOT_TESTABLE
    # settings that are not the study's (differential privacy) are shown but never decide
    private = claim_adaptive_beats_fedavg(strategy_grid({("fedavg", "iid"): 3.5, ("fedadam", "iid"): 3.4},
                                                        dp_clip=0.5))
    assert private["verdict"] == NOT_TESTABLE and private["comparisons"][0]["decides"] is False


def test_a_holm_claim_corrects_over_its_own_deciding_settings_only():
    # "length skew raises the loss" in three study settings; one is contradicted alone (p ~ 0.03)
    # but not after Holm over the claim's three; a DP setting beside them neither decides nor counts
    rows = [cond("length", 3.5, rounds=r) for r in (5, 6)] + [cond("iid", 3.5, rounds=r) for r in (5, 6)]
    rows += [cond("length", 0, rounds=7, finals=[3.5 - 0.02, 3.5 - 0.0105, 3.5 - 0.0185]),
             cond("iid", 0, rounds=7, finals=[3.5, 3.5, 3.5])]
    claim = own_claims.claim_length_skew_hurts(rows)
    marginal = min(claim["comparisons"], key=lambda c: c["effect"])  # the rounds=7 setting
    assert marginal["verdict"] == CONTRADICTED and marginal["p_value"] < 0.05  # contradicted on its own...
    assert marginal["p_holm"] == pytest.approx(min(1, 3 * marginal["p_value"]))  # ...Holm over three
    assert claim["family"] == "holm" and claim["verdict"] == INCONCLUSIVE
    private = own_claims.claim_length_skew_hurts(rows + [cond("length", 3.9, dp_clip=0.5), cond("iid", 3.5, dp_clip=0.5)])
    assert [c["p_holm"] for c in private["comparisons"] if c["decides"]] == \
        [c["p_holm"] for c in claim["comparisons"]]
    alone = own_claims.claim_length_skew_hurts(rows[4:])
    assert alone["verdict"] == CONTRADICTED  # the same comparison, the only one of its claim


def _null_optimizer_grid(rng, seeds=3, sd=0.01) -> list[dict]:
    rows = []
    for scheme in ("length", "quantity", "iid"):
        level = rng.normal(3.5, 0.05, seeds)  # the seed's test texts, shared by its strategies
        for strategy in ("fedavg", "fedadam", "fedyogi"):
            rows.append(cond(scheme, 0, strategy, finals=level + rng.normal(0, sd, seeds)))
    return rows


def test_optimizer_claim_is_calibrated_on_null_data():
    rng = np.random.default_rng(11)
    decided = uncorrected = 0
    reps = 1500
    for _ in range(reps):
        claim = claim_adaptive_beats_fedavg(_null_optimizer_grid(rng))
        decided += claim["verdict"] in (SUPPORTED, CONTRADICTED)
        uncorrected += any(c["p_value"] < 0.05 and c["high"] < 0 for c in claim["comparisons"])
    assert decided / reps <= MAX_FALSE, decided / reps
    # the same six comparisons without Holm would call a contradiction far more often
    assert uncorrected / reps > MAX_FALSE * 1.5, uncorrected / reps


def aggregation_grid(harm_avg, harm_exact, **extra):
    return [cond("length", 3.5 + harm_avg, "fedavg", **extra), cond("iid", 3.5, "fedavg", **extra),
            cond("length", 3.5 + harm_exact, "fedex-lora", **extra), cond("iid", 3.5, "fedex-lora", **extra)]


def test_exact_aggregation_recovers_harm():
    claim = claim_exact_aggregation_recovers(aggregation_grid(0.03, 0.0))
    assert claim["verdict"] == SUPPORTED and claim["effect"] == pytest.approx(0.03, abs=0.01)
    assert "harm FedAvg" in claim["evidence"][0]
    same = claim_exact_aggregation_recovers(aggregation_grid(0.03, 0.03))
    assert same["verdict"] == INCONCLUSIVE
    assert claim_exact_aggregation_recovers(aggregation_grid(0.0, 0.05))["verdict"] == CONTRADICTED
    # without FedEx-LoRA's IID arm there is nothing to pair
    assert claim_exact_aggregation_recovers(aggregation_grid(0.03, 0.0)[:3])["verdict"] == NOT_TESTABLE


def test_exact_aggregation_claim_is_calibrated_on_null_data():
    rng = np.random.default_rng(3)
    decided, reps = 0, 1500
    for _ in range(reps):
        rows = []
        for scheme in ("length", "iid"):
            level = rng.normal(3.5, 0.05, 3)
            rows += [cond(scheme, 0, s, finals=level + rng.normal(0, 0.01, 3)) for s in ("fedavg", "fedex-lora")]
        decided += claim_exact_aggregation_recovers(rows)["verdict"] in (SUPPORTED, CONTRADICTED)
    assert decided / reps <= MAX_FALSE, decided / reps


def test_long_context_settings_have_their_own_claim():
    short = [cond("length", 3.55, max_length=128), cond("iid", 3.50, max_length=128)]
    long = [cond("length", 3.40, max_length=512), cond("iid", 3.45, max_length=512)]
    at_128 = own_claims.claim_length_skew_hurts(short + long)
    at_512 = own_claims.claim_long_context_length_skew_hurts(short + long)
    assert at_128["verdict"] == SUPPORTED and len(at_128["comparisons"]) == 1
    assert at_512["verdict"] == CONTRADICTED and len(at_512["comparisons"]) == 1
    assert at_512["effect"] == pytest.approx(-0.05, abs=0.01)
    assert own_claims.claim_long_context_length_skew_hurts(short)["verdict"] == NOT_TESTABLE
    assert conditions.is_long_context(setting(max_length=512)) and not conditions.is_long_context("m")
