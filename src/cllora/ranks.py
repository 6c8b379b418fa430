"""Heterogeneous LoRA ranks (`--client-ranks`): which rank each client trains, and how a client of
rank r_k < r trains inside the run's one rank-r adapter.

The run's adapter has rank r = `--rank` (its scaling s = α/r). A client of rank r_k receives the
global adapter truncated to its leading r_k components (rows of every A, columns of every B),
trains only those (the other components stay exactly zero: they start at zero and their
gradients are zeroed) and sends them back; the server sees the update zero-padded to rank r.
So s·B_k A_k is exactly the client's update, FedAvg averages the zero-padded factors (the
components above r_k are pulled towards zero by the clients that do not have them, the
heterogeneous-rank bias the study can measure), and FLoRA's stacking Σ p_k s B_k A_k is exact.
Bytes count only the components a client really sends or receives (cllora.aggregate.traffic).

Spec forms:
- `4,8,8,16` — one rank per client (exactly `clients` values);
- `by-size:4,8,16` — clients ordered by their number of training examples (ties by id) and cut
  into as many equal groups as there are values; the smallest clients get the first value.
Every value is an integer in [1, rank]. Pure: no torch import (tensors via their methods).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from cllora.errors import UserError

BY_SIZE = "by-size:"
State = dict
_A, _B = ".lora_A.", ".lora_B."


def _values(text: str, rank: int) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise UserError(f"client_ranks must be comma-separated integers or 'by-size:' followed by them "
                        f"(e.g. 4,8,8,16 or by-size:4,8); got {text!r}") from None
    bad = [v for v in values if not 1 <= v <= rank]
    if bad:
        raise UserError(f"client_ranks values must be between 1 and rank ({rank}); got {bad[0]}")
    return values


def check_spec(spec: str, clients: int, rank: int) -> None:
    """Validate a spec against the run's clients and rank (UserError naming the bad part)."""
    if spec.startswith(BY_SIZE):
        values = _values(spec[len(BY_SIZE):], rank)
        if len(values) > clients:
            raise UserError(f"client_ranks {spec!r} has {len(values)} groups for {clients} clients; "
                            "use at most one group per client")
        return
    values = _values(spec, rank)
    if len(values) != clients:
        raise UserError(f"client_ranks lists {len(values)} ranks for {clients} clients; give exactly one "
                        "per client, or a rule such as by-size:4,8")


def client_ranks(spec: str | None, rank: int, clients: int, sizes: Sequence[int] | None = None) -> list[int]:
    """The rank of every client (partition id order). `sizes` (training examples per client) is
    needed by the by-size rule only."""
    if not spec:
        return [rank] * clients
    check_spec(spec, clients, rank)
    if not spec.startswith(BY_SIZE):
        return _values(spec, rank)
    if sizes is None or len(sizes) != clients:
        raise UserError(f"client_ranks {spec!r} ranks clients by their size, which this process does not "
                        "know for every client (a Flower client with its own data); give one rank per client")
    values = _values(spec[len(BY_SIZE):], rank)
    order = np.lexsort((np.arange(clients), np.asarray(sizes)))  # smallest first, ties by id
    ranks = [0] * clients
    for group, members in enumerate(np.array_split(order, len(values))):
        for cid in members:
            ranks[int(cid)] = values[group]
    return ranks


def truncate(state: State, r: int) -> State:
    """The state with every A's rows and every B's columns from r on set to zero (a copy)."""
    out = {}
    for name, t in state.items():
        if _A in name and t.shape[0] > r:
            t = t.clone()
            t[r:] = 0
        elif _B in name and t.shape[1] > r:
            t = t.clone()
            t[:, r:] = 0
        out[name] = t
    return out


def zero_grads_above(params: dict, r: int) -> None:
    """After backward: no gradient for the components from r on (they stay exactly zero)."""
    for name, p in params.items():
        if p.grad is None:
            continue
        if _A in name and p.shape[0] > r:
            p.grad[r:] = 0
        elif _B in name and p.shape[1] > r:
            p.grad[:, r:] = 0
