"""Every random stream of a run, derived from one seed: `SeedSequence([seed, PURPOSE, *keys])`.

Each purpose (corpus split, partition, local splits, client sampling, batch order, LoRA init,
training noise, the server's DP noise, FLoRA's fresh adapter per client and round) has its own
stream, so changing how one is drawn never shifts another, and any round or client can be re-drawn
on its own (a resume needs no saved RNG state; every engine samples the same clients). Purposes are numbered once here and never renumbered.

A *replicate* re-draws the training purposes (client sampling, batch order, training noise, LoRA
init, DP noise) under the same seed, keeping the data (corpus split, partition, local splits): two
replicates of a run differ in nothing but their training randomness (the null experiment). Replicate 0 is the
stream every run had before replicates existed.
"""

from __future__ import annotations

import numpy as np

PURPOSES = {"local_split": 1, "sample": 2, "batches": 3, "train": 4, "corpus": 5, "partition": 6,
            "lora_init": 7, "dp_noise": 8, "fresh_adapter": 9}
TRAINING_PURPOSES = frozenset({"sample", "batches", "train", "lora_init", "dp_noise", "fresh_adapter"})


def stream(seed: int, purpose: str, *keys: int, replicate: int = 0) -> np.random.Generator:
    """The numpy Generator of one purpose (and e.g. round, client, epoch) under `seed`; a nonzero
    `replicate` re-draws the training purposes only."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown random-stream purpose {purpose!r}; known: {', '.join(PURPOSES)}")
    number = PURPOSES[purpose] + (1000 * int(replicate) if purpose in TRAINING_PURPOSES else 0)
    return np.random.default_rng(np.random.SeedSequence([int(seed), number, *map(int, keys)]))


def torch_seed(seed: int, purpose: str, *keys: int, replicate: int = 0) -> int:
    """An integer seed for torch.manual_seed, drawn from the named stream."""
    return int(stream(seed, purpose, *keys, replicate=replicate).integers(2**62))
