"""Every random stream of a run, derived from one seed: `SeedSequence([seed, PURPOSE, *keys])`.

Each purpose (corpus split, partition, local splits, client sampling, batch order, LoRA init,
training noise) has its own stream, so changing how one is drawn never shifts another, and any
round or client can be re-drawn on its own (a resume needs no saved RNG state; every engine
samples the same clients). Purposes are numbered once here and never renumbered.
"""

from __future__ import annotations

import numpy as np

PURPOSES = {"local_split": 1, "sample": 2, "batches": 3, "train": 4, "corpus": 5, "partition": 6,
            "lora_init": 7}


def stream(seed: int, purpose: str, *keys: int) -> np.random.Generator:
    """The numpy Generator of one purpose (and e.g. round, client, epoch) under `seed`."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown random-stream purpose {purpose!r}; known: {', '.join(PURPOSES)}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), PURPOSES[purpose], *map(int, keys)]))


def torch_seed(seed: int, purpose: str, *keys: int) -> int:
    """An integer seed for torch.manual_seed, drawn from the named stream."""
    return int(stream(seed, purpose, *keys).integers(2**62))
