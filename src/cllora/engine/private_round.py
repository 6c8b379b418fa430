"""The engine's client-level DP step (DP-FedAvg): the run's DP plan, and one round's private mean.

`plan` turns the run's settings into what every round needs (the clip norm, the noise multiplier,
solved from a target ε if asked, δ, ε after each round from cllora.privacy's accountant, and each
client's dominant length class); it raises a UserError before anything is written when a target
cannot be met (dp_target_epsilon = inf: no noise, ε = ∞, the clipping-only baseline).
`private_reply` clips the round's good updates, sums them, adds noise and divides by
clients_per_round: the strategy then takes that one noised mean as its only reply (its server step
is post-processing). The noise (and the round's client sample, `sample_clients`) comes from the
OS's cryptographic randomness (`cllora.privacy.randomness`), or, only with
dp_seeded_noise_voids_guarantee, from the "dp_noise" seed stream of (seed, round), which anyone
with config.json can regenerate. Both engines run it from the shared round loop
(cllora.engine.loop); a resume re-derives the plan from the config and keeps the noise source
config.json records (no noise is ever saved: a resumed round draws fresh noise).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from cllora import privacy
from cllora.aggregate import Reply
from cllora.config.settings import RunConfig
from cllora.errors import UserError
from cllora.privacy.randomness import SecureNormal, secure_sample
from cllora.seeds import stream

SAMPLING = "fixed"  # the engine samples k distinct clients of N each round (experiment.sample_clients)


@dataclass(frozen=True)
class DpPlan:
    clip: float
    noise_multiplier: float
    delta: float
    denominator: int  # clients_per_round, whoever replies
    epsilons: tuple[float, ...]  # ε at δ after rounds 1..R
    classes: np.ndarray  # each client's dominant length class
    num_classes: int
    noise_source: str = "os"  # "os": secret noise and sampling; "seeded": reproducible, no guarantee

    @property
    def secure(self) -> bool:
        return self.noise_source == "os"


def noise_source(config: RunConfig) -> str | None:
    """Where a run's DP randomness comes from: None without DP, "seeded" with the flag, else "os"."""
    if config.dp_clip is None:
        return None
    return "seeded" if config.dp_seeded_noise_voids_guarantee else "os"


def sample(config: RunConfig, dp: "DpPlan | None", round_num: int, seeded) -> list[int]:
    """The round's clients: with secure DP from the OS's random source (the accountant's
    amplification by sampling needs the sample secret), else `seeded(config, round_num)`."""
    if dp is not None and dp.secure:
        return secure_sample(config.clients, config.clients_per_round)
    return seeded(config, round_num)


def noise_multiplier(config: RunConfig) -> tuple[float, float]:
    """(δ, z) of a DP config: z as given, 0 for ε = ∞, else solved for dp_target_epsilon (a UserError
    where no z in the searched range meets it). Needs only the config, so `sweep --dry-run` checks
    every cell with it before any runs."""
    k, n = config.clients_per_round, config.clients
    delta = config.dp_delta if config.dp_delta is not None else privacy.default_delta(n)
    if config.dp_noise is not None:
        return delta, float(config.dp_noise)
    if math.isinf(config.dp_target_epsilon):  # ε = ∞: clipping only, no noise
        return delta, 0.0
    try:
        return delta, _solve(config.dp_target_epsilon, k, n, config.rounds, delta)
    except ValueError as exc:
        raise UserError(f"--dp-target-epsilon (dp_target_epsilon) {config.dp_target_epsilon:g}: {exc}") from None


@functools.lru_cache(maxsize=64)
def _solve(target: float, k: int, n: int, rounds: int, delta: float) -> float:
    return privacy.noise_for_epsilon(target, k, n, rounds, delta, SAMPLING)


def plan(config: RunConfig, labels: np.ndarray, client_train: Sequence[np.ndarray],
         log: Callable[[str], None] = print, source: str | None = None) -> DpPlan | None:
    """The run's DP plan (None without dp_clip); z solved for dp_target_epsilon when that is given.
    `source` overrides the config's noise source (a resume keeps the one config.json records)."""
    if config.dp_clip is None:
        return None
    source = source or noise_source(config)
    k, n = config.clients_per_round, config.clients
    delta, z = noise_multiplier(config)
    eps = privacy.epsilons(float(z), k, n, config.rounds, delta, SAMPLING) if z > 0 \
        else [math.inf] * config.rounds
    log(f"client-level DP: clip {config.dp_clip:g}, noise multiplier {z:.4g}, {k} of {n} clients a round "
        f"(sampled without replacement), epsilon {eps[-1]:.3g} at delta {delta:.3g} after "
        f"{config.rounds} rounds")
    if source == "seeded":
        log("warning: DP noise and client sampling are seeded (dp_seeded_noise_voids_guarantee): anyone "
            "with config.json can subtract the noise; this run is a simulation with NO privacy guarantee")
    return DpPlan(float(config.dp_clip), float(z), delta, k, tuple(eps),
                  privacy.dominant_classes(labels, client_train, config.num_classes), config.num_classes,
                  source)


def private_reply(dp: DpPlan, config: RunConfig, global_state: dict, good: list,
                  round_num: int) -> tuple[Reply, dict]:
    """The noised mean of the round's clipped updates as the strategy's one reply, and the round's
    DP columns (ε so far, the noise's std on the mean, clip statistics overall and by class)."""
    rng = SecureNormal() if dp.secure else stream(config.seed, "dp_noise", round_num,
                                                  replicate=config.replicate)
    mean = privacy.private_mean(global_state, [u.state for u in good], dp.clip, dp.noise_multiplier,
                                dp.denominator, rng)
    classes = dp.classes[[u.client_id for u in good]] if good else np.zeros(0, np.int64)
    row = {"dp_epsilon": dp.epsilons[round_num - 1], "dp_noise_std": mean.noise_std,
           **privacy.clip_statistics(mean.norms, mean.factors, classes, dp.num_classes)}
    return Reply(mean.state, 1.0), row
