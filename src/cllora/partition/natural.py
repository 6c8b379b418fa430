"""Natural clients (one per value of a column: author, president, era) and the Dirichlet alphas they match.

Pure numpy, like `cllora.partition.core`. A natural partition is fixed by the data: client i holds every
training row whose group value is the i-th largest group's, so it depends on the seed only through
the corpus split (which rows are training rows) and needs no random draws. Clients keep their
natural, unequal sizes; rows are never shared.

- `partition_natural`: the groups as clients (the N largest; the rest left out or merged).
- `fit_length_alpha`: the Dirichlet alpha of the clients' class (length) mixes, fitted by matching
  the mean TV distance of simulated clients of the natural clients' own sizes, sampling noise
  included, so that random clients of unequal sizes come out as IID, not as skewed.
- `fit_quantity_alpha`: the alpha of `--scheme quantity` whose client sizes have, on average, the
  natural clients' Gini. Both give an interval (the simulations' spread and a bootstrap over
  clients); why simulation matching rather than a Dirichlet likelihood: see
  `cllora.partition.stats.fit_alpha_to_simulations`.
- `same_size_iid_tv`: the mean TV distance that random clients of the same sizes show (for scale).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from cllora.errors import UserError
from cllora.partition.base import (
    DEFAULT_MIN_CLIENT_SIZE,
    Partition,
    check_int,
    check_labels,
    check_rng,
    equal_size,
)
from cllora.partition.core import min_size
from cllora.partition.stats import (
    ALPHA_GRID,
    AlphaFit,
    bootstrap_clients,
    class_counts,
    client_tv,
    fit_alpha_to_simulations,
    gini,
    mean_tv,
    sample_class_counts,
)

OTHER = "(other)"  # the name of the client that merges the small groups


def partition_natural(groups: Sequence, num_clients: int, rng: np.random.Generator, *,
                      min_client_size: int | None = None, merge_small: bool = False,
                      key: str = "the client key") -> Partition:
    """One client per group value (`groups[i]` is row i's value, read as text), largest first.

    Groups with fewer than min_client_size rows (default 8, one batch) cannot be clients. The
    num_clients largest of the others become clients (ties by name); the rows of all remaining
    groups are left out, or with merge_small form one more client named "(other)" beside the
    num_clients - 1 largest. `rng` is checked but not drawn from: the groups fix the clients.
    Bad requests raise `UserError` naming `key`: a key with one value, more clients than groups.
    """
    check_rng(rng)
    num_clients = check_int("num_clients", num_clients, 1)
    low = DEFAULT_MIN_CLIENT_SIZE if min_client_size is None else check_int("min_client_size", min_client_size, 1)
    if groups is None or isinstance(groups, str) or len(groups) == 0:
        raise ValueError("groups must hold one value per training row for the natural scheme")
    names, owner, counts = np.unique(np.array([str(g) for g in groups]), return_inverse=True,
                                     return_counts=True)
    if len(names) < 2:
        raise UserError(f"{key} has one value ({str(names[0])!r}) in the training texts; natural clients need "
                        "a key with at least 2 values")
    order = sorted(range(len(names)), key=lambda g: (-counts[g], names[g]))
    eligible = [g for g in order if counts[g] >= low]
    kept, other = _choose_groups(eligible, order, counts, num_clients, low, merge_small, key)
    clients = [np.flatnonzero(owner == g) for g in kept]
    labels = [str(names[g]) for g in kept]
    if other:
        clients.append(np.flatnonzero(np.isin(owner, other)))
        labels.append(OTHER)
    return Partition(clients, _notes(names, counts, kept, other, order, key), tuple(labels))


def _choose_groups(eligible: list[int], order: list[int], counts: np.ndarray, num_clients: int, low: int,
                   merge_small: bool, key: str) -> tuple[list[int], list[int]]:
    """(groups kept as clients, groups merged into "(other)"), or a UserError when too few."""
    if len(eligible) >= num_clients and (not merge_small or len(order) == num_clients):
        return eligible[:num_clients], []
    if merge_small:
        kept = eligible[:num_clients - 1]
        other = [g for g in order if g not in set(kept)]
        if len(kept) == num_clients - 1 and other and counts[other].sum() >= low:
            return kept, other
    most = len(eligible) + (1 if merge_small and len(order) > len(eligible) else 0)
    if most == 0:
        largest = int(counts[order].max()) if len(order) else 0
        raise UserError(f"no value of client key {key!r} has at least {low} training texts (the largest "
                        f"has {largest}); use --min-client-size {largest} or lower, or more training texts")
    raise UserError(f"clients ({num_clients}) is more than the {most} clients that {key} can give "
                    f"({len(order)} values, {len(eligible)} with at least {low} training texts); "
                    f"use --clients {max(most, 1)} or fewer, or a lower --min-client-size")


def _notes(names: np.ndarray, counts: np.ndarray, kept: list[int], other: list[int], order: list[int],
           key: str) -> tuple[str, ...]:
    left = [g for g in order if g not in set(kept) and g not in set(other)]
    notes = []
    if other:
        notes.append(f"{len(other)} smaller groups of {key} ({int(counts[other].sum()):,} texts) merged "
                     f"into the client {OTHER}")
    if left:
        shown = ", ".join(str(names[g]) for g in left[:5]) + (", ..." if len(left) > 5 else "")
        notes.append(f"{len(left)} groups of {key} ({int(counts[left].sum()):,} texts: {shown}) are not "
                     "clients and their texts are left out of training (raise --clients, lower "
                     "--min-client-size or use --small-groups merge)")
    return tuple(notes)


# ---------------------------------------------------------------- which alpha does it look like?

def fit_length_alpha(partition: Partition, labels, num_classes: int, rng: np.random.Generator, *,
                     client_size: int | None = None, draws: int = 500, reps: int = 200) -> AlphaFit:
    """The Dirichlet alpha of the clients' class mixes: simulated clients of this partition's own
    sizes, each drawing its mix from Dirichlet(alpha·K·pooled shares) (the length partitioner's
    Dirichlet(alpha·1) when the classes are equally large) and its counts from a multinomial of
    its size, show on average the observed mean TV distance of the class mixes to the pooled mix.

    The multinomial sampling is what lets random clients look random: a client of 20 texts is far
    from the pooled mix by chance alone, so only the distance beyond that is read as skew, and
    clients whose distance lies within the simulations' spread at the grid's largest alpha get an
    interval reaching it (`AlphaFit.iid_like`). The fitted alpha describes the mixes, not the
    noise: `--scheme length` at that alpha draws clients with such mixes but no sampling noise (and,
    when it uses every text, classes that run out), so they look more alike than these clients.

    `reps` simulated partitions per alpha; `draws` bootstrap resamples of the clients' distances,
    each to the pooled mix of all clients (against a resample's own pooled mix, the repeated
    clients pull it towards themselves and bias the resampled mean down, which with few clients
    stretched the interval to IID). Empty clients are skipped. `client_size` is ignored: it sized
    the equal-size clients the fit simulated before it used the clients' own sizes."""
    labels = check_labels(labels, num_classes)
    counts = class_counts(partition.clients, labels, num_classes)
    counts = counts[counts.sum(axis=1) > 0]
    if len(counts) < 2:
        raise ValueError(f"fitting alpha needs at least 2 non-empty clients, got {len(counts)}")
    sizes, pooled = counts.sum(axis=1), counts.sum(axis=0)
    sims = np.stack([mean_tv(sample_class_counts(sizes, pooled, float(a), reps, rng)) for a in ALPHA_GRID])
    tv = client_tv(counts)  # each client's distance to the pooled mix of all of them
    boot = tv[rng.integers(0, len(tv), (draws, len(tv)))].mean(axis=1)
    return fit_alpha_to_simulations(float(tv.mean()), boot, sims, grid=ALPHA_GRID)


def fit_quantity_alpha(partition: Partition, labels, num_classes: int, rng: np.random.Generator, *,
                       client_size: int | None = None, min_client_size: int | None = None,
                       draws: int = 500, reps: int = 200) -> AlphaFit:
    """The alpha of quantity skew (`--scheme quantity --clients N --client-size S` over `labels`)
    whose partitions have, on average, this partition's Gini of client sizes.

    The sizes are simulated as the quantity partitioner draws them (`quantity_sizes`), not with
    sampling noise: the statistic is the sizes themselves, which natural clients show exactly."""
    labels = check_labels(labels, num_classes)
    sizes = np.array([len(rows) for rows in partition.clients], dtype=float)
    n = len(sizes)
    total = n * equal_size(len(labels), n, client_size, None) if client_size is not None else len(labels)
    low, _ = min_size(min_client_size, n, total)
    sims = np.stack([_gini_rows(quantity_sizes(n, total, low, float(a), reps, rng)) for a in ALPHA_GRID])
    boot = bootstrap_clients(lambda idx: gini(sizes[idx]), n, rng, draws)
    return fit_alpha_to_simulations(gini(sizes), boot, sims, grid=ALPHA_GRID)


def quantity_sizes(num_clients: int, total: int, low: int, alpha: float, reps: int,
                   rng: np.random.Generator) -> np.ndarray:
    """(reps, num_clients) client sizes as `partition_quantity` draws them: low + a Dirichlet(alpha·1)
    share of total - num_clients·low, largest-remainder rounded (reps=1 reproduces its draw)."""
    rest = total - num_clients * low
    shares = rng.dirichlet(np.full(num_clients, alpha), size=reps) + 1e-300
    exact = rest * shares / shares.sum(axis=1, keepdims=True)
    counts = np.floor(exact).astype(np.int64)
    short = rest - counts.sum(axis=1, keepdims=True)
    rank = np.argsort(np.argsort(counts - exact, axis=1, kind="stable"), axis=1)
    return low + counts + (rank < short)


def _gini_rows(x: np.ndarray) -> np.ndarray:
    """`gini` of each row of a (rows, values) array of positive values."""
    x = np.sort(np.asarray(x, dtype=float), axis=1)
    ranks = np.arange(1, x.shape[1] + 1)
    return ((2 * ranks - x.shape[1] - 1) * x).sum(axis=1) / (x.shape[1] * x.sum(axis=1))


def same_size_iid_tv(partition: Partition, labels, num_classes: int, rng: np.random.Generator,
                     reps: int = 20) -> float:
    """Mean TV distance of clients of this partition's sizes filled at random from its rows: the
    part of the observed heterogeneity that sampling alone gives (small clients look skewed)."""
    labels = check_labels(labels, num_classes)
    sizes = [len(rows) for rows in partition.clients]
    pool = np.concatenate(partition.clients)
    owners = np.repeat(np.arange(len(sizes)), sizes)
    means = []
    for _ in range(reps):
        counts = np.zeros((len(sizes), num_classes), dtype=np.int64)
        np.add.at(counts, (owners, labels[rng.permutation(pool)]), 1)
        means.append(client_tv(counts).mean())
    return float(np.mean(means))
