"""Natural clients (one per value of a column) and the Dirichlet alphas fitted to them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cllora import partition as part
from cllora.cli import main
from cllora.config.settings import RunConfig
from cllora.data import load_corpus, sotu_corpus
from cllora.errors import UserError
from cllora.partition.natural import (
    OTHER,
    fit_length_alpha,
    fit_quantity_alpha,
    partition_natural,
    quantity_sizes,
    same_size_iid_tv,
)
from cllora.partition.stats import (
    ALPHA_GRID,
    client_tv,
    fit_alpha,
    fit_alpha_to_simulations,
    mean_tv,
    sample_class_counts,
)

RNG = np.random.default_rng

# 10 rows of a, 6 of b, 3 of c, 1 of d, stored interleaved
GROUPS = ["a", "b", "a", "c", "a", "b", "a", "d", "b", "a", "c", "a", "b", "a", "c", "a", "b", "a", "b", "a"]


def rows_of(value: str) -> list[int]:
    return [i for i, g in enumerate(GROUPS) if g == value]


# ---------------------------------------------------------------- the partitioner

def test_groups_become_clients_largest_first():
    p = partition_natural(GROUPS, 3, RNG(0), min_client_size=1)
    assert p.names == ("a", "b", "c")
    assert [c.tolist() for c in p.clients] == [rows_of("a"), rows_of("b"), rows_of("c")]
    assert p.notes and "1 groups" in p.notes[0] and "(1 texts: d)" in p.notes[0]
    again = partition_natural(GROUPS, 3, RNG(5), min_client_size=1)
    assert all(np.array_equal(x, y) for x, y in zip(p.clients, again.clients))


def test_merge_puts_the_rest_into_other():
    p = partition_natural(GROUPS, 3, RNG(0), min_client_size=1, merge_small=True)
    assert p.names == ("a", "b", OTHER)
    assert p.clients[2].tolist() == sorted(rows_of("c") + rows_of("d"))
    assert sum(len(c) for c in p.clients) == len(GROUPS)  # covering
    everyone = partition_natural(GROUPS, 4, RNG(0), min_client_size=1, merge_small=True)
    assert everyone.names == ("a", "b", "c", "d") and not everyone.notes


def test_min_client_size_and_ties():
    p = partition_natural(GROUPS, 2, RNG(0), min_client_size=6)
    assert p.names == ("a", "b")
    tied = partition_natural(["y", "x", "y", "x", "z"], 2, RNG(0), min_client_size=1)
    assert tied.names == ("x", "y")  # equal sizes: by name
    assert partition_natural([1, 2, 2, 1], 2, RNG(0), min_client_size=1).names == ("1", "2")


@pytest.mark.parametrize("kwargs,match", [
    (dict(groups=["a"] * 9, num_clients=1), r"client key 'k' has one value \('a'\)"),
    (dict(groups=GROUPS, num_clients=4), r"clients \(4\) is more than the 2 clients that client key 'k' "
                                         r"can give \(4 values, 2 with at least 6 training texts\)"),
    (dict(groups=GROUPS, num_clients=5, min_client_size=1), r"more than the 4 clients"),
    (dict(groups=GROUPS, num_clients=4, merge_small=True), r"more than the 3 clients"),
])
def test_bad_requests_are_user_errors(kwargs, match):
    kwargs = {"min_client_size": 6, **kwargs}
    with pytest.raises(UserError, match=match):
        partition_natural(kwargs.pop("groups"), kwargs.pop("num_clients"), RNG(0), key="client key 'k'",
                          **kwargs)


def test_make_partition_routes_natural():
    labels = np.array([i % 3 for i in range(len(GROUPS))])
    p = part.make_partition("natural", labels, 2, RNG(0), num_classes=3, groups=GROUPS, min_client_size=1)
    assert p.names == ("a", "b")
    with pytest.raises(ValueError, match="groups must hold one value per training row"):
        part.make_partition("natural", labels, 2, RNG(0), num_classes=3)


def test_natural_needs_a_client_key_in_the_config():
    with pytest.raises(UserError, match="scheme natural needs client_key"):
        RunConfig(scheme="natural")
    with pytest.raises(UserError, match="small_groups must be one of drop, merge"):
        RunConfig(scheme="natural", client_key="party", small_groups="keep")
    RunConfig(scheme="iid", client_key="party")  # ignored by the other schemes (a sweep may vary scheme)


# ---------------------------------------------------------------- fitting alpha

def test_fit_alpha_inverts_a_known_curve():
    """simulate(alpha) = 1 / (1 + alpha): the statistic 0.5 is alpha 1 and 1/101 is alpha 100
    (both grid points); beyond the curve's ends the fit stops at the grid's ends."""
    curve = lambda a, rng: 1 / (1 + a)  # noqa: E731
    fit = fit_alpha(0.5, np.full(10, 0.5), curve, RNG(0), reps=1)
    assert (fit.alpha, fit.low, fit.high) == pytest.approx((1.0, 1.0, 1.0))
    assert fit_alpha(1 / 101, np.full(3, 0.5), curve, RNG(0), reps=1).alpha == pytest.approx(100)
    edge = fit_alpha(0.999, np.array([0.999] * 50 + [1e-6] * 50), curve, RNG(0), reps=1)
    assert (edge.alpha, edge.low, edge.high) == (ALPHA_GRID[0], ALPHA_GRID[0], ALPHA_GRID[-1])
    assert edge.model_interval == (ALPHA_GRID[0], ALPHA_GRID[0])  # a curve without noise: one point


def test_fit_alpha_model_interval_inverts_the_simulated_quantiles():
    """simulate(alpha) = 1/(1+alpha) + noise of +-0.1 (uniform): the observed 0.5 lies in the central
    95 % of the draws for 1/(1+alpha) within 0.5 -+ 0.095, i.e. alpha from 1/0.595 - 1 = 0.68 to
    1/0.405 - 1 = 1.47 (up to simulation noise and the grid's log-linear steps)."""
    noisy = lambda a, rng: 1 / (1 + a) + rng.uniform(-0.1, 0.1)  # noqa: E731
    fit = fit_alpha(0.5, np.full(5, 0.5), noisy, RNG(0), reps=400)
    assert fit.alpha == pytest.approx(1.0, rel=0.05)
    assert fit.model_interval == pytest.approx((1 / 0.595 - 1, 1 / 0.405 - 1), rel=0.1)
    assert (fit.low, fit.high) == fit.model_interval  # the client bootstrap (no spread) adds nothing


def natural_like(alpha: float | None, seed: int, num_clients: int = 30) -> tuple[part.Partition, np.ndarray]:
    """Clients of 20-400 texts, as natural clients come. alpha given: each client's texts' classes
    are drawn one by one from its own Dirichlet(alpha·1) mix over 5 classes. alpha None: a corpus of
    5 equally large classes dealt at random to the clients (no skew at all)."""
    rng = RNG(seed)
    sizes = rng.integers(20, 401, num_clients)
    if alpha is None:
        labels = np.repeat(np.arange(5), sizes.sum())  # 5x more texts than the clients take
        rows = rng.permutation(len(labels))[:sizes.sum()]
    else:
        labels = np.concatenate([rng.choice(5, n, p=rng.dirichlet(np.full(5, alpha))) for n in sizes])
        rows = np.arange(len(labels))
    return part.Partition(np.split(rows, np.cumsum(sizes)[:-1])), labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unskewed_clients_of_unequal_sizes_are_indistinguishable_from_iid(seed):
    """Random clients of 20-400 texts are far from the pooled mix by sampling alone (mean TV about
    0.06); the former fit, which simulated equal-size clients without sampling noise, read that as
    alpha 5.7 (2.8 - 10.8). Their interval must reach the top of the grid."""
    partition, labels = natural_like(None, seed)
    fit = fit_length_alpha(partition, labels, 5, RNG(100 + seed))
    assert fit.high >= 100 and fit.iid_like and fit.high == ALPHA_GRID[-1]
    assert fit.describe().startswith("indistinguishable from IID (interval from alpha ")


@pytest.mark.parametrize("alpha", [0.1, 1.0, 10.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_fitted_alpha_recovers_the_alpha_of_natural_like_clients(alpha, seed):
    """Clients of unequal sizes whose texts are drawn from Dirichlet(alpha) mixes, generated here
    text by text (not by the fit's own simulator, nor by the length partitioner)."""
    partition, labels = natural_like(alpha, seed)
    fit = fit_length_alpha(partition, labels, 5, RNG(100 + seed))
    assert fit.low <= alpha <= fit.high and fit.high / fit.low < 10 and not fit.iid_like


@pytest.mark.parametrize("alpha", [0.1, 1.0, 10.0])
def test_fitted_quantity_alpha_recovers_the_partitioners_alpha(alpha):
    """The quantity fit simulates the quantity partitioner's sizes: its own draws are the target."""
    labels = RNG(42).integers(0, 5, 2000)
    quantity = part.make_partition("quantity", labels, 20, RNG(1), alpha=alpha, num_classes=5)
    fit = fit_quantity_alpha(quantity, labels, 5, RNG(101))
    assert fit.low <= alpha <= fit.high and fit.high / fit.low < 50


@pytest.mark.parametrize("alpha", [0.1, 1.0])
def test_length_skew_at_the_fitted_alpha_is_fitted_back(alpha):
    """`--scheme length` at alpha with the study-natural preset's share of the texts (20 clients of
    74 of 2,000) is fitted back near alpha (median of 5 seeds within a factor 1.5). At alpha 10 it
    is not: the partitioner's rounded clients lack the sampling noise of real ones and look more
    mixed (BENCHMARKS.md, bench_alpha_fit)."""
    labels = RNG(42).integers(0, 5, 2000)
    fits = [fit_length_alpha(part.make_partition("length", labels, 20, RNG(seed), alpha=alpha, num_classes=5,
                                                 client_size=74), labels, 5, RNG(100 + seed)).alpha
            for seed in range(5)]
    assert alpha / 1.5 <= np.median(fits) <= alpha * 1.5


def test_sample_class_counts_is_dirichlet_multinomial():
    """Count of class j of a client of size n: mean n·p_j and, with A = alpha·K the Dirichlet's total,
    variance n·p_j(1 - p_j)(n + A)/(1 + A). A class with share 0 gets nothing."""
    shares, sizes, alpha = np.array([0.5, 0.3, 0.0, 0.2]), np.array([10, 200]), 2.0
    counts = sample_class_counts(sizes, shares, alpha, 20_000, RNG(0))
    assert counts.shape == (20_000, 2, 4) and (counts.sum(axis=2) == sizes).all() and not counts[..., 2].any()
    p, total = np.array([0.5, 0.3, 0.2]), alpha * 3
    for k, n in enumerate(sizes):
        observed = counts[:, k][:, [0, 1, 3]]
        assert observed.mean(axis=0) == pytest.approx(n * p, rel=0.03)
        assert observed.var(axis=0) == pytest.approx(n * p * (1 - p) * (n + total) / (1 + total), rel=0.05)
    tiny = sample_class_counts(sizes, shares, 0.01, 1000, RNG(1))  # Gamma(0.003) underflows plain sampling
    assert (tiny.sum(axis=2) == sizes).all() and (tiny.max(axis=2) == sizes).mean() > 0.9


def test_mean_tv_matches_client_tv():
    counts = RNG(0).integers(1, 30, (7, 4, 5))
    assert mean_tv(counts) == pytest.approx([client_tv(c).mean() for c in counts])


def test_quantity_sizes_are_the_partitioners():
    labels = RNG(0).integers(0, 5, 1000)
    for alpha, seed in ((0.1, 0), (1.0, 1), (50.0, 2)):
        drawn = part.make_partition("quantity", labels, 12, RNG(seed), alpha=alpha, num_classes=5, client_size=60)
        sizes = quantity_sizes(12, 720, 8, alpha, 1, RNG(seed))[0]
        assert sizes.tolist() == [len(c) for c in drawn.clients]


def test_fit_describes_itself_and_checks_the_simulations():
    curve = lambda a, rng: 1 / (1 + a)  # noqa: E731
    assert fit_alpha(0.5, np.full(10, 0.5), curve, RNG(0), reps=1).describe() == "alpha 1 (interval 1 - 1)"
    with pytest.raises(ValueError, match=r"sims must hold one row of draws per grid alpha \(41\), got shape \(3, 2\)"):
        fit_alpha_to_simulations(0.5, np.full(3, 0.5), np.zeros((3, 2)))
    one = part.Partition([np.arange(10), np.zeros(0, dtype=np.int64)])
    with pytest.raises(ValueError, match="fitting alpha needs at least 2 non-empty clients, got 1"):
        fit_length_alpha(one, np.zeros(10, dtype=np.int64), 5, RNG(0))


def test_smaller_alpha_is_fitted_smaller_and_iid_baseline():
    labels = RNG(1).integers(0, 5, 2000)
    fits = [fit_length_alpha(part.make_partition("length", labels, 20, RNG(0), alpha=a, num_classes=5),
                             labels, 5, RNG(0), draws=100, reps=4).alpha for a in (0.1, 1.0, 100.0)]
    assert fits[0] < fits[1] < fits[2]
    iid = part.make_partition("iid", labels, 20, RNG(0), num_classes=5)
    # 100 rows per client over 5 classes: E|p̂ - p| summed is about sqrt(2/pi) * 5 * sqrt(.2 * .8 / 100)
    expected = 0.5 * np.sqrt(2 / np.pi) * 5 * np.sqrt(0.2 * 0.8 / 100)
    assert same_size_iid_tv(iid, labels, 5, RNG(0)) == pytest.approx(expected, rel=0.15)


# ---------------------------------------------------------------- the corpus carries each text's group

def test_sotu_keys_follow_each_address():
    texts, presidents = sotu_corpus(key="president")
    assert len(texts) == len(presidents) and presidents[0] == "George Washington"
    assert presidents[-1] == "Donald J. Trump"
    assert {"John Adams", "John Quincy Adams", "George H.W. Bush", "George W. Bush"} <= set(presidents)
    assert sotu_corpus(key="decade")[1][0] == "1790s" and sotu_corpus(key="century")[1][-1] == "2000-2099"
    assert set(sotu_corpus(key="sotu_type")[1]) == {"spoken", "written"}
    chunks, parties = sotu_corpus(chunked=True, key="party")
    assert len(chunks) == len(parties) and parties[0] == "Nonpartisan"


def test_split_does_not_depend_on_the_key():
    plain = load_corpus("sotu", seed=2, max_train_examples=300, max_test_examples=30)
    keyed = load_corpus("sotu", seed=2, max_train_examples=300, max_test_examples=30, group_key="party")
    assert (keyed.train, keyed.test) == (plain.train, plain.test)
    assert plain.train_groups is None and len(keyed.train_groups) == 300
    texts, parties = sotu_corpus(key="party")
    parties_of: dict[str, set] = {}
    for text, party in zip(texts, parties):  # a few short paragraphs recur in several addresses
        parties_of.setdefault(text, set()).add(party)
    assert all(g in parties_of[t] for t, g in zip(keyed.train, keyed.train_groups))
    assert len(set(keyed.train_groups)) >= 5


@pytest.fixture
def author_csv(tmp_path):
    """150 texts by 4 authors of different habits: a (60, short), b (45, long), c (30, mixed), d (15)."""
    rng = RNG(0)
    rows = []
    for author, count, (lo, hi) in (("a", 60, (2, 12)), ("b", 45, (25, 60)), ("c", 30, (2, 60)),
                                     ("d", 15, (5, 30))):
        rows += [{"text": " ".join(["word"] * int(rng.integers(lo, hi))) + ".", "author": author,
                  "year": 2000} for _ in range(count)]
    path = tmp_path / "authors.csv"
    import pandas as pd

    pd.DataFrame(rows).sample(frac=1, random_state=0).to_csv(path, index=False)
    return str(path)


def test_local_file_key_errors(author_csv, tmp_path):
    corpus = load_corpus(author_csv, group_key="author")
    assert set(corpus.train_groups) == {"a", "b", "c", "d"}
    with pytest.raises(UserError, match=r"client key 'writer' is not a column of .*; its columns are: text, "
                                        r"author, year"):
        load_corpus(author_csv, group_key="writer")
    (tmp_path / "t.txt").write_text("one\n\ntwo\n")
    with pytest.raises(UserError, match="client key 'author' needs columns"):
        load_corpus(str(tmp_path / "t.txt"), group_key="author")
    with pytest.raises(UserError, match="client key 'author' is not a key of the embedded corpus; use one "
                                        "of: president, party, decade, century, sotu_type"):
        load_corpus("sotu", group_key="author")


# ---------------------------------------------------------------- the command

def test_partition_command_natural_with_fit(tiny_model, author_csv, tmp_path, capsys):
    out_json, out_png = tmp_path / "nat.json", tmp_path / "nat.png"
    argv = ["partition", "--dataset", author_csv, "--model", tiny_model, "--scheme", "natural",
            "--client-key", "author", "--clients", "3", "--fit-alpha", "--json", str(out_json),
            "--plot", str(out_png)]
    assert main(argv) == 0
    shown = capsys.readouterr().out
    assert "natural by author" in shown and "fitted α" in shown and "Gini of client sizes" in shown
    assert "cllora run --scheme length --alpha" in shown and f"--dataset {author_csv}" in shown
    saved = json.loads(out_json.read_text())
    assert saved["client_key"] == "author" and saved["alpha"] is None
    assert [c["name"] for c in saved["clients"]] == ["a", "b", "c"]
    assert saved["stats"]["num_assigned"] < saved["stats"]["num_examples"]  # d is left out
    assert "d" in " ".join(saved["notes"])
    fitted = saved["fitted_alpha"]["length"]
    assert fitted["low"] <= fitted["alpha"] <= fitted["high"]
    size = sum(c["size"] for c in saved["clients"]) // 3  # as many texts in all as the natural clients
    assert f"--clients 3 --client-size {size} " in fitted["command"] and f"--client-size {size}" in shown
    assert out_png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("argv,match", [
    (["--client-key", "writer"], "client key 'writer' is not a column of"),
    (["--client-key", "year"], "client key 'year' has one value ('2000')"),
    (["--client-key", "author", "--clients", "6"], "clients (6) is more than the 4 clients"),
    (["--client-key", "author", "--scheme", "length"], "--fit-alpha fits a Dirichlet alpha to natural clients"),
    (["--clients", "3"], "scheme natural needs client_key"),
])
def test_bad_natural_input_is_one_line_exit_2_nothing_written(tiny_model, author_csv, tmp_path, argv, match,
                                                               capsys):
    out_json = tmp_path / "x.json"
    base = ["partition", "--dataset", author_csv, "--model", tiny_model, "--scheme", "natural",
            "--fit-alpha", "--json", str(out_json)]
    assert main(base + argv) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1].split("\r")[-1]  # after the datasets progress bar, if any
    assert last.startswith("cllora: error: ") and match in last and "Traceback" not in err
    assert not out_json.exists()
