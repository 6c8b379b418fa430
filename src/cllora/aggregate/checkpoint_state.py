"""The checkpoint's tensors: a run's strategy state (global adapter, server state, every client's own
state) as one flat tensor dict and back, so the checkpoint that marks a round complete holds all of
it in one atomic write. (The round loop's in-memory state, metric rows included, is
cllora.engine.loop's `RunState`.)

Global adapter tensors keep their names (a FedAvg checkpoint is exactly the adapter); the others
are prefixed "server::<name>" and "client::<id>::<name>" (adapter names never contain "::").
The running total of what strategies merged into the frozen base weights (FLoRA, FedEx-LoRA) is
kept as "base::<base weight name>" (`with_base` / `split_base`).
"""

from __future__ import annotations

from typing import Mapping

from cllora.aggregate.base import State

SERVER, CLIENT, BASE, SEP = "server", "client", "base", "::"


def pack_state(global_state: State, server_state: State, client_states: Mapping[int, State]) -> State:
    flat = dict(global_state)
    flat.update({f"{SERVER}{SEP}{k}": v for k, v in server_state.items()})
    for cid, own in client_states.items():
        flat.update({f"{CLIENT}{SEP}{cid}{SEP}{k}": v for k, v in own.items()})
    return flat


def unpack_state(flat: State) -> tuple[State, State, dict[int, State]]:
    """(global adapter, server state, client states by id) of a packed dict."""
    global_state: State = {}
    server_state: State = {}
    client_states: dict[int, State] = {}
    for key, value in flat.items():
        parts = key.split(SEP)
        if parts[0] == SERVER and len(parts) == 2:
            server_state[parts[1]] = value
        elif parts[0] == CLIENT and len(parts) == 3:
            client_states.setdefault(int(parts[1]), {})[parts[2]] = value
        else:
            global_state[key] = value
    return global_state, server_state, client_states


def with_base(flat: State, base_total: State) -> State:
    """A packed state plus the running total of base-weight deltas (nothing added when empty)."""
    return {**flat, **{f"{BASE}{SEP}{k}": v for k, v in base_total.items()}}


def split_base(flat: State) -> tuple[State, State]:
    """(the packed state without them, the base-weight delta totals by base weight name)."""
    prefix = f"{BASE}{SEP}"
    rest = {k: v for k, v in flat.items() if not k.startswith(prefix)}
    return rest, {k[len(prefix):]: v for k, v in flat.items() if k.startswith(prefix)}
