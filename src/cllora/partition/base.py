"""What every partitioner shares: the `Partition` it returns and the checks of its arguments
(public, so the natural-client, statistics and flwr-datasets modules use the same ones)."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

DEFAULT_MIN_CLIENT_SIZE = 8  # one batch of the default batch size


@dataclass(frozen=True)
class Partition:
    """Rows of the training split held by each client, and notes on what had to be adjusted."""

    clients: list[np.ndarray]  # each a sorted int64 array of row indices into the training split
    notes: tuple[str, ...] = ()  # e.g. "class 4 ran out: clients asked for 520 of its 400 rows, ..."
    names: tuple[str, ...] = ()  # natural clients: the group value each client holds; else empty


def check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def check_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not math.isfinite(alpha) \
            or alpha <= 0:
        raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
    return float(alpha)


def check_labels(labels, num_classes: int | None = None) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"labels must be a non-empty 1-D array of integers, got shape {arr.shape} "
                         f"and dtype {arr.dtype}")
    if arr.min() < 0:
        raise ValueError(f"labels must be >= 0, got {int(arr.min())}")
    if num_classes is not None and arr.max() >= check_int("num_classes", num_classes, 1):
        raise ValueError(f"num_classes must be > the largest label ({int(arr.max())}), got {num_classes}")
    return arr.astype(np.int64, copy=False)


def check_rng(rng) -> None:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator (np.random.default_rng(seed)), "
                        f"got {type(rng).__name__}")


def equal_size(n: int, num_clients, client_size, min_client_size) -> int:
    """Examples per client for the equal-size schemes: client_size, or floor(n / num_clients)."""
    num_clients = check_int("num_clients", num_clients, 1)
    if num_clients > n:
        raise ValueError(f"num_clients must be <= the number of examples ({n}), got {num_clients}")
    size = n // num_clients
    if client_size is not None:
        if check_int("client_size", client_size, 1) > size:
            raise ValueError(f"client_size must be <= {size} ({n} examples over {num_clients} "
                             f"clients), got {client_size}")
        size = int(client_size)
    if min_client_size is not None and check_int("min_client_size", min_client_size, 1) > size:
        raise ValueError(f"min_client_size must be <= {size} (the size of each of the {num_clients} "
                         f"clients), got {min_client_size}")
    return size
