"""The report's statistics (cllora.analysis.stats) on numbers whose answer is known by hand or by
construction: the token-weighted paired bootstrap (its effect, its pairing by text, the coverage
and width of its interval on a case with a known true difference), the t-interval over seeds,
the three-way verdict, and `compare` on pure noise (inconclusive), a clear effect (supported), the
reversed effect (contradicted) at 3 seeds, fewer seeds (always inconclusive), the minimal
detectable effect and Holm's correction. The verdicts' calibration on simulated null data is in
test_calibration.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cllora.analysis import stats
from cllora.analysis.stats import CONTRADICTED, INCONCLUSIVE, SUPPORTED

T_975_2DF = 4.302652729749462  # Student t, 97.5 % quantile, 2 and 1 degrees of freedom (tables)
T_975_1DF = 12.706204736174694


def texts(loss, tokens=None, index=None):
    loss = np.asarray(loss, dtype=float)
    tokens = np.ones(len(loss), dtype=int) if tokens is None else np.asarray(tokens)
    index = np.arange(len(loss)) if index is None else np.asarray(index)
    return index, tokens, loss


def diff(m):
    """Condition 1 minus condition 0 (the contrast of most tests)."""
    return m[1] - m[0]


# ---------------------------------------------------------------- pieces

def test_t_interval_and_bands_by_hand():
    mean, low, high = stats.t_interval([1.0, 2.0, 3.0])  # sd 1, se 1/sqrt(3)
    assert mean == 2.0 and (low, high) == pytest.approx((2 - T_975_2DF / math.sqrt(3), 2 + T_975_2DF / math.sqrt(3)))
    assert stats.t_interval([2.5]) == (2.5, None, None)
    band = stats.mean_std_curve([[(0, 1.0), (1, 2.0)], [(0, 3.0)]])
    assert band["half"] == pytest.approx([T_975_1DF * math.sqrt(2) / math.sqrt(2), 0.0]) and band["n"] == [2, 1]


def test_verdict_and_combine():
    assert stats.verdict(0.01, 0.2) == SUPPORTED
    assert stats.verdict(-0.2, -0.01) == CONTRADICTED
    assert stats.verdict(-0.01, 0.2) == INCONCLUSIVE
    assert stats.verdict(None, None) == INCONCLUSIVE
    # equivalence: inside ±5 % supports, wholly outside contradicts, straddling is inconclusive
    assert stats.verdict(-0.02, 0.03, -0.05, 0.05) == SUPPORTED
    assert stats.verdict(0.06, 0.09, -0.05, 0.05) == CONTRADICTED
    assert stats.verdict(0.03, 0.07, -0.05, 0.05) == INCONCLUSIVE
    assert stats.combine([SUPPORTED, SUPPORTED]) == SUPPORTED
    assert stats.combine([SUPPORTED, INCONCLUSIVE]) == INCONCLUSIVE
    assert stats.combine([SUPPORTED, CONTRADICTED, INCONCLUSIVE]) == CONTRADICTED
    assert stats.combine([]) == INCONCLUSIVE


def test_relative_range_and_spearman():
    assert stats.relative_range([2.0, 2.4, 2.2]) == pytest.approx(0.4 / 2.2)
    assert stats.relative_range(np.array([[1.0, 2.0], [3.0, 2.0]])) == pytest.approx([1.0, 0.0])
    assert stats.spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    assert stats.spearman([1, 2, 3], [5, 5, 5]) == 0.0


def test_text_units_pair_by_seed_and_text_index():
    # condition b lists its texts in another order and lacks text 2; seed 9 is only in a
    a = {0: texts([1.0, 2.0, 3.0], tokens=[1, 2, 3], index=[0, 1, 2]), 9: texts([5.0])}
    b = {0: texts([20.0, 10.0], tokens=[2, 1], index=[1, 0])}
    num, den, seeds = stats.text_units([a, b])
    assert seeds == [0]
    assert num.tolist() == [[1.0, 4.0], [10.0, 40.0]] and den.tolist() == [[1.0, 2.0], [1.0, 2.0]]


def test_paired_bootstrap_effect_is_the_token_weighted_difference():
    # a: (1*2 + 3*4) / 4 = 3.5; b: 1.0 everywhere -> b - a = -2.5
    num, den, _ = stats.text_units([{0: texts([2.0, 4.0], tokens=[1, 3])}, {0: texts([1.0, 1.0], tokens=[1, 3])}])
    effect, low, high = stats.paired_bootstrap(num, den, diff, n_resamples=200)
    assert effect == pytest.approx(-2.5) and low <= effect <= high
    # identical conditions: no variation, the interval is the point (no NaN)
    same, _, _ = stats.text_units([{0: texts([2.0, 4.0])}, {0: texts([2.0, 4.0])}])
    assert stats.paired_bootstrap(same, same * 0 + 1, diff, n_resamples=200) == (0.0, 0.0, 0.0)


def test_paired_bootstrap_interval_covers_a_known_difference():
    """Texts of varied true loss and length, b = a's true loss + 0.05 + independent noise: the
    95 % interval holds 0.05 in about 95 % of 100 repetitions and is as wide as the normal theory
    interval of a token-weighted mean of paired differences."""
    rng = np.random.default_rng(11)
    n, delta, noise = 120, 0.05, 0.2
    hits, width_ratio = 0, []
    for rep in range(100):
        true = rng.normal(3.0, 0.5, n)
        tokens = rng.integers(10, 100, n)
        a = texts(true + noise * rng.standard_normal(n), tokens)
        b = texts(true + delta + noise * rng.standard_normal(n), tokens)
        num, den, _ = stats.text_units([{0: a}, {0: b}])
        _, low, high = stats.paired_bootstrap(num, den, diff, n_resamples=1000, seed=rep)
        hits += low <= delta <= high
        w = tokens / tokens.sum()
        se = math.sqrt(2 * noise**2 * np.sum(w**2))
        width_ratio.append((high - low) / (2 * 1.959964 * se))
    assert 0.88 <= hits / 100 <= 0.99
    assert 0.85 <= np.mean(width_ratio) <= 1.15


# ---------------------------------------------------------------- compare: the three verdicts

def two_conditions(rng, delta, n=200, noise=0.3, seeds=(0,)):
    """Per seed: the same true per-text losses for both conditions, b shifted by delta, each with
    independent noise. Returns (seed_values, texts) as compare takes them."""
    values, tables = [{}, {}], [{}, {}]
    for s in seeds:
        true, tokens = rng.uniform(2.0, 5.0, n), rng.integers(5, 128, n)
        for c, shift in enumerate((0.0, delta)):
            t = texts(true + shift + noise * rng.standard_normal(n), tokens)
            tables[c][s] = t
            values[c][s] = float(np.sum(t[1] * t[2]) / np.sum(t[1]))
    return values, tables


def test_fewer_than_three_seeds_are_always_inconclusive():
    # pure noise and a clear effect alike: one or two seeds cannot tell training luck from an
    # effect; the test-text interval is kept, labelled as covering test-text sampling only
    for seeds in ((0,), (0, 1)):
        for delta in (0.0, 0.2, -0.2):
            values, tables = two_conditions(np.random.default_rng(100 + len(seeds)), delta=delta, seeds=seeds)
            est = stats.compare(values, diff, tables)
            assert est["verdict"] == INCONCLUSIVE and est["low"] is None and est["seeds"] == len(seeds)
            assert est["texts"] == 200 * len(seeds) and "test-text sampling only" in est["method"]
            assert f"a verdict needs {stats.MIN_SEEDS}" in est["method"]
            if delta:
                low, high = est["text_interval"]
                assert low > 0 if delta > 0 else high < 0  # the bootstrap alone would have decided
                assert "test texts only" in stats.fmt_effect(est)


def test_clear_effect_is_supported_and_reversed_effect_contradicted():
    values, tables = two_conditions(np.random.default_rng(1), delta=0.2, seeds=(0, 1, 2))
    est = stats.compare(values, diff, tables)
    assert est["verdict"] == SUPPORTED and 0 < est["low"] <= 0.2 <= est["high"]
    values, tables = two_conditions(np.random.default_rng(1), delta=-0.2, seeds=(0, 1, 2))
    assert stats.compare(values, diff, tables)["verdict"] == CONTRADICTED


def test_an_exact_tie_is_not_contradicted():
    assert stats.verdict(0.0, 0.0) == INCONCLUSIVE
    est = stats.compare([{0: 2.0, 1: 2.1, 2: 2.2}, {0: 2.0, 1: 2.1, 2: 2.2}], diff)
    assert est["effect"] == 0.0 and est["verdict"] == INCONCLUSIVE


def test_without_per_text_losses_one_seed_is_a_point_estimate():
    est = stats.compare([{0: 2.0}, {0: 2.5}], diff, None)
    assert est["verdict"] == INCONCLUSIVE and est["effect"] == 0.5
    assert est["low"] is None and est["text_interval"] is None
    assert est["method"] == "1 seed: a verdict needs 3"
    assert stats.compare([{0: 2.0}, {1: 2.5}], diff) is None  # no common seed


def test_three_seeds_use_the_t_interval_over_seeds():
    # per-seed effects 0.4, 0.5, 0.6: mean 0.5 ± t(2) * 0.1 / sqrt(3)
    est = stats.compare([{0: 2.0, 1: 2.0, 2: 2.0}, {0: 2.4, 1: 2.5, 2: 2.6}], diff, None)
    half = T_975_2DF * 0.1 / math.sqrt(3)
    assert est["method"].startswith("t-interval over 3 seeds") and est["seeds"] == 3
    assert (est["effect"], est["low"], est["high"]) == pytest.approx((0.5, 0.5 - half, 0.5 + half))
    assert est["verdict"] == SUPPORTED
    # per-seed effects +0.3, -0.2, +0.1: the interval crosses 0
    noisy = stats.compare([{0: 2.0, 1: 2.0, 2: 2.0}, {0: 2.3, 1: 1.8, 2: 2.1}], diff, None)
    assert noisy["verdict"] == INCONCLUSIVE
    # seeds decide over a narrow bootstrap: within-run precision is not training noise
    values, tables = two_conditions(np.random.default_rng(3), delta=0.2, seeds=(0, 1, 2))
    values[1][1] -= 0.6  # one seed goes the other way
    both = stats.compare(values, diff, tables)
    assert both["verdict"] == INCONCLUSIVE
    one = stats.compare([{0: values[0][0]}, {0: values[1][0]}], diff, [{0: tables[0][0]}, {0: tables[1][0]}])
    assert one["text_interval"][0] > 0  # seed 0's texts alone would have said supported


def test_planning_mde_has_its_power_by_simulation_and_by_the_published_table():
    """The planning MDE (noncentral t) detects itself with 80 % ± 3 % power in simulated seeds,
    where the normal-style (t.975 + t.80)·sd/√n the report used before has 76.6 % at 3 seeds; it
    matches G*Power's one-sample t table (d = 0.996 at n = 10, 1.68 at n = 5); it is a planning
    number only: compare() no longer reports an MDE from the sample it judges."""
    from cllora.analysis.power import planning_mde, t_power

    assert planning_mde(1.0, 10) == pytest.approx(0.996, abs=0.001)
    assert planning_mde(1.0, 5) == pytest.approx(1.68, abs=0.005)
    old = (T_975_2DF + 1.0606601717798212) / math.sqrt(3)  # t.80 with 2 df
    assert t_power(old, 1.0, 3) == pytest.approx(0.766, abs=0.001)
    rng = np.random.default_rng(80)
    for n in (3, 5):
        mde = planning_mde(0.01, n)
        hits = sum(stats.compare([dict(enumerate(rng.normal(mde, 0.01, n))), {s: 0.0 for s in range(n)}],
                                 lambda m: m[0] - m[1])["verdict"] != INCONCLUSIVE for _ in range(4000))
        assert abs(hits / 4000 - 0.80) <= 0.03, (n, hits / 4000)
    assert "mde" not in stats.compare([{0: 1.0, 1: 1.1, 2: 1.2}, {0: 1.0, 1: 1.0, 2: 1.0}], diff)
    # seeds needed: the fewest n whose exact power reaches 80 %
    n = stats.seeds_needed(0.01, 0.01)
    assert t_power(0.01, 0.01, n) >= 0.8 > t_power(0.01, 0.01, n - 1)
    assert stats.seeds_needed(0.001, 0.1, most=20) is None


def test_holm_by_hand():
    # p = (0.01, 0.04, 0.03): sorted 0.01*3, max(0.03, 0.03*2), max(0.06, 0.04*1)
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([None, 0.02]) == [None, 0.02]
    assert stats.t_pvalue([0.4, 0.5, 0.6]) == pytest.approx(
        2 * (1 - __import__("scipy").stats.t.cdf(0.5 / (0.1 / math.sqrt(3)), 2)))


def test_only_the_studys_own_settings_decide_its_claims():
    """FedAvg at replicate 0 without DP or natural clients decides a study claim; a DP run (its
    clipping and noise change the loss), another strategy, a replicate or the natural-client
    experiment is shown but never decides."""
    import json

    from cllora.analysis.conditions import is_study_setting

    def key(**values):
        return json.dumps({"model": "m", "strategy": "fedavg", "replicate": 0, "dp_clip": None,
                           "client_key": None, **values}, sort_keys=True)

    assert is_study_setting(key())
    assert is_study_setting(json.dumps({"model": "m"}))  # runs from before these settings existed
    for other in ({"dp_clip": 0.5}, {"strategy": "fedprox"}, {"replicate": 1}, {"client_key": "president"}):
        assert not is_study_setting(key(**other)), other


def test_setting_labels_tell_apart_settings_that_differ_in_a_key_older_runs_lack():
    from cllora.analysis.conditions import setting_labels

    old = {"model": "m", "rounds": 5}  # a run recorded before the DP keys existed
    configs = {"a": old, "b": {**old, "dp_target_epsilon": 8.0}, "c": {**old, "dp_target_epsilon": 2.0}}
    labels = setting_labels(configs)
    assert len(set(labels.values())) == 3, labels
    assert labels["b"] == "m, dp_target_epsilon=8" and labels["c"] == "m, dp_target_epsilon=2"


def test_runs_recorded_before_an_option_existed_pair_with_runs_that_record_its_default():
    """Seeds added to a published sweep by a newer cllora record new keys at None ("dp_clip":
    null) that the older runs lack: both are one setting, so their seeds pair; a real value differs."""
    from cllora.analysis.conditions import setting_key

    old = {"model": "m", "rounds": 5, "scheme": "iid", "alpha": 1.0, "seed": 0}
    new = {**old, "seed": 3, "dp_clip": None, "dp_target_epsilon": None}
    assert setting_key(old) == setting_key(new)
    assert setting_key(old) != setting_key({**new, "dp_clip": 0.5})
    # flags added later read as absent at their default False, and as a setting when on
    flags = {**new, "secagg": False, "dp_seeded_noise_voids_guarantee": False}
    assert setting_key(old) == setting_key(flags)
    assert setting_key(old) != setting_key({**flags, "secagg": True})


def test_long_setting_labels_give_file_names_a_file_system_accepts():
    from cllora.files import SLUG_CHARS, slug

    label = "smollm2-135m, " + ", ".join(f"key_{i}=None" for i in range(40))  # ~500 characters
    a, b = slug(label), slug(label + "x")
    assert len(a) <= SLUG_CHARS and len(b) <= SLUG_CHARS and a != b  # cut, yet distinct
    assert slug("smollm2-135m, rounds=5") == "smollm2-135m_rounds_5"  # short names unchanged


def test_the_headline_is_the_declared_setting_never_the_most_seeds_or_the_order():
    from cllora.analysis.verdicts import claim_record

    def est(effect, seeds, sweep):
        return {"verdict": "inconclusive", "effect": effect, "seeds": seeds, "method": "t", "p_value": 0.5,
                "sweeps": [sweep], "sweep_dirs": [sweep]}

    fig6, other = est(0.2, 3, "study-null-quick"), est(0.1, 5, "study-strategies-quick")
    for order in ([("a", fig6, "", True), ("b", other, "", True)], [("b", other, "", True), ("a", fig6, "", True)]):
        out = claim_record("c", "s", "t", "", order, "needs", headline=("study-null", "study-length"))
        assert out["effect"] == 0.2 and out["seeds"] == 3 and out["headline"] == "a"
    none = claim_record("c", "s", "t", "", [("a", fig6, "", True), ("b", other, "", True)], "needs",
                        headline="study-quantity")
    assert none["headline"] is None and none["effect"] is None and none["verdict"] == "inconclusive"
    one = claim_record("c", "s", "t", "", [("b", other, "", True)], "needs", headline="study-quantity")
    assert one["headline"] == "b"  # a claim with one deciding comparison shows that one
