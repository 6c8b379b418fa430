"""Client-level differential privacy for federated LoRA (DP-FedAvg, McMahan et al. 2018): clipping
each sampled client's update, the noised fixed-denominator mean, and the privacy accountant.

Pure: tensors and numpy arrays in and out, randomness passed in as a numpy Generator, no I/O and
no config. The engine's glue (`cllora.engine.private_round`) reads the run's settings and calls these.

    clip       update_norm, clip_factor, clipped_deltas; clip statistics by dominant length class
    noise      private_mean: Σ clip(y_k − x) + N(0, (zC)² I), divided by a fixed denominator
    accountant ε after t rounds (dp-accounting's RDP accountant) for the sampling the engine does,
               and the noise multiplier z that meets a target ε
"""

from __future__ import annotations

from cllora.privacy.accountant import (
                                       SAMPLINGS,
                                       default_delta,
                                       epsilon,
                                       epsilons,
                                       noise_for_epsilon,
                                       round_rdp,
)
from cllora.privacy.clip import (
                                       DP_COLUMNS,
                                       clip_columns,
                                       clip_factor,
                                       clip_statistics,
                                       clipped_deltas,
                                       dominant_classes,
                                       update_norm,
)
from cllora.privacy.noise import PrivateMean, private_mean

__all__ = ["DP_COLUMNS", "PrivateMean", "SAMPLINGS", "clip_columns", "clip_factor", "clip_statistics", "clipped_deltas",
           "default_delta", "dominant_classes", "epsilon", "epsilons", "noise_for_epsilon",
           "private_mean", "round_rdp", "update_norm"]
