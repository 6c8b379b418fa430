"""Natural clients (one per value of a column: author, president, era) and the Dirichlet alphas they match.

Pure numpy, like `cllora.partition`. A natural partition is fixed by the data: client i holds every
training row whose group value is the i-th largest group's, so it depends on the seed only through
the corpus split (which rows are training rows) and needs no random draws. Clients keep their
natural, unequal sizes; rows are never shared.

- `partition_natural`: the groups as clients (the N largest; the rest left out or merged).
- `fit_length_alpha` / `fit_quantity_alpha`: the alpha of `--scheme length` / `--scheme quantity`
  whose partitions are, on average, as heterogeneous as a natural partition (mean TV distance of
  the class mixes / Gini of the sizes), with an interval (the simulations' spread and a bootstrap
  over clients). Why simulation matching rather than a Dirichlet likelihood: see
  `cllora.partition_stats.fit_alpha`.
- `same_size_iid_tv`: the mean TV distance that random clients of the same sizes show (for scale).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from cllora.errors import UserError
from cllora.partition import (DEFAULT_MIN_CLIENT_SIZE, Partition, _check_int, _check_labels, _check_rng,
                              partition_length, partition_quantity)
from cllora.partition_stats import AlphaFit, bootstrap_clients, class_counts, client_tv, fit_alpha, gini

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
    _check_rng(rng)
    num_clients = _check_int("num_clients", num_clients, 1)
    low = DEFAULT_MIN_CLIENT_SIZE if min_client_size is None else _check_int("min_client_size", min_client_size, 1)
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
                     client_size: int | None = None, draws: int = 500, reps: int = 30) -> AlphaFit:
    """The alpha of length skew (`--scheme length --clients N --client-size S` over `labels`) whose
    partitions have, on average, the mean TV distance of this partition's class mixes to their
    pooled mix. `client_size` as for the partitioner (default floor(n / N); pass the natural
    clients' mean size to keep the total number of texts)."""
    labels = _check_labels(labels, num_classes)
    counts = class_counts(partition.clients, labels, num_classes)
    n = len(partition.clients)

    def simulate(alpha: float, sim_rng: np.random.Generator) -> float:
        sim = partition_length(labels, n, sim_rng, alpha=alpha, num_classes=num_classes,
                               client_size=client_size)
        return float(client_tv(class_counts(sim.clients, labels, num_classes)).mean())

    boot = bootstrap_clients(lambda idx: float(client_tv(counts[idx]).mean()), n, rng, draws)
    return fit_alpha(float(client_tv(counts).mean()), boot, simulate, rng, reps=reps)


def fit_quantity_alpha(partition: Partition, labels, num_classes: int, rng: np.random.Generator, *,
                       client_size: int | None = None, min_client_size: int | None = None,
                       draws: int = 500, reps: int = 30) -> AlphaFit:
    """The alpha of quantity skew (`--scheme quantity --clients N --client-size S` over `labels`)
    whose partitions have, on average, this partition's Gini of client sizes."""
    labels = _check_labels(labels, num_classes)
    sizes = np.array([len(rows) for rows in partition.clients], dtype=float)
    n = len(sizes)

    def simulate(alpha: float, sim_rng: np.random.Generator) -> float:
        sim = partition_quantity(labels, n, sim_rng, alpha=alpha, num_classes=num_classes,
                                 client_size=client_size, min_client_size=min_client_size)
        return gini([len(rows) for rows in sim.clients])

    boot = bootstrap_clients(lambda idx: gini(sizes[idx]), n, rng, draws)
    return fit_alpha(gini(sizes), boot, simulate, rng, reps=reps)


def same_size_iid_tv(partition: Partition, labels, num_classes: int, rng: np.random.Generator,
                     reps: int = 20) -> float:
    """Mean TV distance of clients of this partition's sizes filled at random from its rows: the
    part of the observed heterogeneity that sampling alone gives (small clients look skewed)."""
    labels = _check_labels(labels, num_classes)
    sizes = [len(rows) for rows in partition.clients]
    pool = np.concatenate(partition.clients)
    owners = np.repeat(np.arange(len(sizes)), sizes)
    means = []
    for _ in range(reps):
        counts = np.zeros((len(sizes), num_classes), dtype=np.int64)
        np.add.at(counts, (owners, labels[rng.permutation(pool)]), 1)
        means.append(client_tv(counts).mean())
    return float(np.mean(means))
