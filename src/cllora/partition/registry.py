"""The scheme registry: every way of dividing texts over clients, with its title in figures and
the report, whether it is a Dirichlet scheme (alpha means something), and its partitioner.
Config choices, the CLI, report titles and drawing all read this one table; adding a scheme is a
partitioner function and one `register` call (see CONTRIBUTING.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from cllora.partition.base import Partition, check_labels
from cllora.partition.core import partition_iid, partition_length, partition_quantity
from cllora.partition.natural import partition_natural


@dataclass(frozen=True)
class Scheme:
    name: str
    title: str  # in figures and the report: "length skew"
    uses_alpha: bool  # a Dirichlet scheme: --alpha sets its skew (iid and natural ignore alpha)
    partition: Callable[..., Partition]  # (labels, num_clients, rng, *, num_classes, alpha, client_size,
    #                                        min_client_size, groups, merge_small, key) -> Partition


SCHEMES: dict[str, Scheme] = {}


def register(scheme: Scheme) -> Scheme:
    """Add a scheme (or replace one of the same name)."""
    SCHEMES[scheme.name] = scheme
    return scheme


def scheme_names() -> tuple[str, ...]:
    return tuple(SCHEMES)


def alpha_schemes() -> tuple[str, ...]:
    """The Dirichlet schemes: the only ones alpha means anything for."""
    return tuple(name for name, s in SCHEMES.items() if s.uses_alpha)


def uses_alpha(scheme: str) -> bool:
    return scheme in SCHEMES and SCHEMES[scheme].uses_alpha


def scheme_title(scheme: str) -> str:
    """The scheme's title in figures and the report (its name when it is not registered)."""
    return SCHEMES[scheme].title if scheme in SCHEMES else scheme


def _dirichlet(partitioner: Callable[..., Partition]) -> Callable[..., Partition]:
    def run(labels, num_clients, rng, *, num_classes, alpha, client_size, min_client_size, **_):
        return partitioner(labels, num_clients, rng, alpha=alpha, num_classes=num_classes,
                           client_size=client_size, min_client_size=min_client_size)
    return run


def _natural(labels, num_clients, rng, *, num_classes, min_client_size, groups, merge_small, key, **_):
    check_labels(labels, num_classes)
    return partition_natural(groups, num_clients, rng, min_client_size=min_client_size,
                             merge_small=merge_small, key=key)


register(Scheme("iid", "IID", False, _dirichlet(partition_iid)))
register(Scheme("length", "length skew", True, _dirichlet(partition_length)))
register(Scheme("quantity", "quantity skew", True, _dirichlet(partition_quantity)))
register(Scheme("natural", "natural clients", False, _natural))


def make_partition(scheme: str, labels, num_clients: int, rng: np.random.Generator, *, num_classes: int,
                   alpha: float = 1.0, client_size: int | None = None, min_client_size: int | None = None,
                   groups: Sequence | None = None, merge_small: bool = False,
                   key: str = "the client key") -> Partition:
    """Partition rows by one of the registered schemes (iid and natural ignore alpha). num_classes
    comes from the settings, never from the labels: a class may be empty. natural needs `groups`
    (one value per row; see `cllora.partition.natural.partition_natural`), the others ignore it."""
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}; got {scheme!r}")
    return SCHEMES[scheme].partition(labels, num_clients, rng, num_classes=num_classes, alpha=alpha,
                                     client_size=client_size, min_client_size=min_client_size,
                                     groups=groups, merge_small=merge_small, key=key)
