"""The noised fixed-denominator mean of clipped client updates (DP-FedAvg's server step, with
uniform client weights):

    x' = x + (Σ_{k∈S} clip(Δ_k) + N(0, (zC)² I)) / D

D is fixed (the number of clients sampled per round), never the number that replied: a failed
client counts as a zero update, so one client moves the sum by at most C whatever the others do.
The noise is drawn tensor by tensor in sorted name order from the Generator passed in, so the
same Generator state gives the same noise after a resume. Sums run in float64 and are cast back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from cllora.privacy.clip import clipped_deltas

State = dict


@dataclass(frozen=True)
class PrivateMean:
    """The next global adapter, what clipping did, and the noise's std per coordinate of the mean."""

    state: State
    norms: list[float]  # each client's update norm before clipping
    factors: list[float]  # each client's clip factor (1 = not clipped)
    noise_std: float  # z·C / D: the std of the noise in each coordinate of the mean update


def private_mean(global_state: State, states: Sequence[State], clip: float, noise_multiplier: float,
                 denominator: int, rng: np.random.Generator) -> PrivateMean:
    """x + (Σ clip(y_k − x) + N(0, (zC)² I)) / D over the client adapters `states` (any number,
    even none: the noise is added all the same)."""
    import torch

    if not noise_multiplier >= 0:
        raise ValueError(f"noise_multiplier must be >= 0, got {noise_multiplier!r}")
    if not (isinstance(denominator, int) and denominator >= max(1, len(states))):
        raise ValueError(f"denominator must be an integer >= the number of clients ({len(states)}) "
                         f"and >= 1, got {denominator!r}")
    deltas, norms, factors = clipped_deltas(global_state, states, clip)
    sigma = noise_multiplier * clip
    out: State = {}
    for key in sorted(global_state):
        x = global_state[key]
        total = torch.zeros(x.shape, dtype=torch.float64)
        for delta in deltas:
            total += delta[key].cpu()
        noise = torch.from_numpy(np.asarray(rng.standard_normal(tuple(x.shape)), dtype=np.float64))
        mean = (total + sigma * noise) / denominator
        out[key] = (x.double() + mean.to(x.device)).to(x.dtype)
    return PrivateMean({k: out[k] for k in global_state}, norms, factors, sigma / denominator)
