"""Optional adapter: the iid and length schemes computed by flwr-datasets' partitioners.

For comparison with the hand-written core in `cllora.partition.core` (same `Partition` result, same
validation); `benchmarks/bench_partition.py` times both. The core stays the default: see its module
docstring for why. Two adjustments make flwr's output comparable:
- rows are shuffled by the seed before partitioning, because `IidPartitioner` cuts contiguous
  shards of the stored order and `InnerDirichletPartitioner` takes each class's rows in stored
  order (on a corpus stored by date, clients would otherwise become eras);
- the dataset is cut to num_clients × client_size rows so `IidPartitioner`'s shards are equal.
Quantity skew with a stratified class mix has no exact flwr counterpart and is refused.

Known flwr limitation: when every class a client's Dirichlet draw favours has run out, its
renormalised priors become 0/0 and numpy raises "probabilities contain NaN" (flwrlabs/flower#4377).
Measured here with 20 clients: about 15 % of seeds fail at alpha=0.05 and about 70 % at alpha=0.01
(none at alpha >= 0.1). The adapter turns that into a ValueError that says so.
"""

from __future__ import annotations

import warnings

import numpy as np

from cllora.partition.base import Partition, check_alpha, check_labels, equal_size

FLWR_SCHEMES = ("iid", "length")


def flwr_partition(scheme: str, labels, num_clients: int, seed: int, alpha: float,
                   client_size: int | None = None, *, num_classes: int) -> Partition:
    """Partition rows with flwr-datasets: iid by `IidPartitioner`, length by
    `InnerDirichletPartitioner` (equal sizes, class mix ~ Dirichlet(alpha) over num_classes)."""
    if scheme not in FLWR_SCHEMES:
        raise ValueError(f"scheme must be one of {', '.join(FLWR_SCHEMES)} for the flwr backend "
                         f"(quantity skew is only in cllora.partition.core); got {scheme!r}")
    labels = check_labels(labels, num_classes)
    size = equal_size(len(labels), num_clients, client_size, None)
    order = np.random.default_rng(seed).permutation(len(labels))
    if scheme == "iid":
        order = order[:num_clients * size]
    else:
        alpha = check_alpha(alpha)
        missing = np.setdiff1d(np.arange(num_classes), labels)
        if len(missing):  # InnerDirichletPartitioner assumes classes 0..K-1 all occur
            raise ValueError(f"labels must use every class 0..{num_classes - 1} for the flwr backend, "
                             f"got none of class(es) {missing.tolist()}")
    partitioner = _partitioner(scheme, num_clients, size, seed, alpha)
    partitioner.dataset = _dataset(labels[order], order)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The sum of the partition_sizes")
        warnings.filterwarnings("ignore", message="invalid value encountered in divide")
        try:
            clients = [np.sort(np.asarray(partitioner.load_partition(i)["row"], dtype=np.int64))
                       for i in range(num_clients)]
        except ValueError as exc:
            if "NaN" not in str(exc):
                raise
            raise ValueError(f"flwr-datasets' InnerDirichletPartitioner failed for alpha={alpha:g} "
                             "(a client's Dirichlet mass lay only on classes that had run out: "
                             "flwrlabs/flower#4377); use the core partitioner in cllora.partition.core") from None
    return Partition(clients, (f"partitioned by flwr-datasets {type(partitioner).__name__}",))


def _partitioner(scheme: str, num_clients: int, size: int, seed: int, alpha: float):
    from flwr_datasets.partitioner import IidPartitioner, InnerDirichletPartitioner

    if scheme == "iid":
        return IidPartitioner(num_partitions=num_clients)
    return InnerDirichletPartitioner(partition_sizes=[size] * num_clients, partition_by="label",
                                     alpha=float(alpha), shuffle=False, seed=seed)


def _dataset(labels: np.ndarray, rows: np.ndarray):
    """A plain in-memory `datasets.Dataset` (no hub): the class label and the original row index."""
    from datasets import Dataset

    return Dataset.from_dict({"label": labels.tolist(), "row": rows.tolist()})
