"""A run's strategy state (global adapter, server state, every client's own state) as one flat tensor
dict and back, so the checkpoint that marks a round complete holds all of it in one atomic write.

Global adapter tensors keep their names (a FedAvg checkpoint is exactly the adapter); the others
are prefixed "server::<name>" and "client::<id>::<name>" (adapter names never contain "::").
"""

from __future__ import annotations

from typing import Mapping

from cllora.aggregate.base import State

SERVER, CLIENT, SEP = "server", "client", "::"


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
