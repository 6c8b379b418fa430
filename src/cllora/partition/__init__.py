"""Dividing a corpus over clients: the scheme registry and `make_partition` (`registry`), the
core partitioners and length classes (`core`), the `Partition` type and argument checks
(`base`), natural clients and the fitted Dirichlet alpha (`natural`), partition statistics
(`stats`) and the flwr-datasets partitioners (`flwr`, imported on its own: it needs flwr)."""

from cllora.partition.base import DEFAULT_MIN_CLIENT_SIZE, Partition
from cllora.partition.core import (
                                   length_classes,
                                   partition_iid,
                                   partition_length,
                                   partition_quantity,
                                   sentence_counts,
                                   split_local,
)
from cllora.partition.registry import (
                                   SCHEMES,
                                   Scheme,
                                   alpha_schemes,
                                   make_partition,
                                   register,
                                   scheme_names,
                                   scheme_title,
                                   uses_alpha,
)

__all__ = ["DEFAULT_MIN_CLIENT_SIZE", "Partition", "SCHEMES", "Scheme", "alpha_schemes", "length_classes",
           "make_partition", "partition_iid", "partition_length", "partition_quantity", "register",
           "scheme_names", "scheme_title", "sentence_counts", "split_local", "uses_alpha"]
