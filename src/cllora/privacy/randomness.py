"""Where client-level DP's randomness comes from: the operating system's cryptographic random
source (the default, "os"), or a run's seed streams ("seeded", for reproducible simulation studies
only: anyone who knows the seed, which config.json publishes, can regenerate the noise and the
client sample, so a seeded run has no privacy guarantee at all).

    secure_normal(shape)      standard normal draws from os.urandom (Box–Muller on 53-bit uniforms)
    SecureNormal              a Generator-like object with standard_normal(shape), for private_mean
    secure_sample(n, k)       k distinct of range(n) from secrets.SystemRandom
    noise_source_of(record)   the source a run directory's config.json records ("seeded" when absent:
                              runs made before the record existed all used seeded noise)

Nothing here is stored or derived from a seed: a resumed run draws fresh noise for the rounds it
has not released yet. Floating-point Gaussian sampling is not the discrete Gaussian of Canonne,
Kamath & Steinke (2020); its known floating-point side channels (Mironov 2012, for Laplace) are
outside what cllora claims.
"""

from __future__ import annotations

import math
import os
import secrets

import numpy as np

NOISE_SOURCES = ("os", "seeded")
RECORD_KEY = "dp_noise_source"  # config.json, top level (beside precision and device); absent = seeded


def _uniforms(count: int) -> np.ndarray:
    """`count` uniform draws in (0, 1] from 53 random bits each, read from os.urandom."""
    bits = np.frombuffer(os.urandom(8 * count), dtype=np.uint64) >> np.uint64(11)
    return (bits.astype(np.float64) + 1.0) * 2.0 ** -53


def secure_normal(shape: tuple[int, ...]) -> np.ndarray:
    """Independent N(0, 1) draws of the given shape from the OS's cryptographic random source
    (Box–Muller: both the cosine and the sine of each pair are used)."""
    count = int(np.prod(shape, dtype=np.int64)) if len(shape) else 1
    pairs = (count + 1) // 2
    u1, u2 = _uniforms(pairs), _uniforms(pairs)
    radius = np.sqrt(-2.0 * np.log(u1))
    angle = 2.0 * math.pi * u2
    out = np.concatenate([radius * np.cos(angle), radius * np.sin(angle)])[:count]
    return out.reshape(shape)


class SecureNormal:
    """What `cllora.privacy.noise.private_mean` draws its noise from when the noise must be
    secret: `standard_normal(shape)` like a numpy Generator's, but from os.urandom."""

    def standard_normal(self, shape) -> np.ndarray:
        return secure_normal(tuple(shape))


def secure_sample(population: int, size: int) -> list[int]:
    """`size` distinct clients of range(`population`), sorted, from the OS's random source."""
    if not (isinstance(population, int) and isinstance(size, int) and 0 <= size <= population):
        raise ValueError(f"need integers 0 <= size <= population, got {size} of {population}")
    return sorted(secrets.SystemRandom().sample(range(population), size))


def noise_source_of(record: dict) -> str | None:
    """The DP noise source a run's config.json (`record`) says it used: None without DP, "seeded"
    for a DP run whose record predates the field (every such run drew seeded noise)."""
    if (record.get("config") or {}).get("dp_clip") is None:
        return None
    return record.get(RECORD_KEY, "seeded")
