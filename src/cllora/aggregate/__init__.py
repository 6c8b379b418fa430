"""Federated strategies (pure: tensors in, tensors out; no I/O): the registry, the interface every
strategy fills, and the payload checks the server applies to what clients send.

A strategy is a frozen `Strategy` record of plain functions (cllora.aggregate.base), "state in,
state out"; every state is a flat dict name → tensor, so the engine can checkpoint it as it is.
One round, in both engines:

    server   server_state = s.init_server(global, opts)            (once, before round 1)
             downlink     = s.downlink(server_state)               sent beside the global adapter
    client   view = ClientView(global, downlink, own client_state, opts)
             plan = s.local(view)   → LocalPlan(start, loss_term, grad_hook, trains)
                    train from plan.start; loss += plan.loss_term(params) each batch;
                    plan.grad_hook(params) after backward, before the optimizer step;
                    only tensors with plan.trains(name) are optimised
             extra, client_state = s.finish(view, trained_adapter, local_steps)
                    `extra` travels up beside the adapter (checked against s.uplink(global): names,
                    shapes, dtypes, finite); `client_state` stays with the client
    server   out = s.aggregate(global, server_state, replies, opts) → Aggregated(
                    global_state, server_state, base_delta)   base_delta: added to frozen base weights

Bytes per client and round: downlink = shared adapter tensors (s.shares) + downlink tensors;
uplink = shared adapter tensors + extra. `opts` holds the strategy's own options (declared on it as
`Strategy.options`, each an `Option` that cllora.config turns into a RunConfig field and a flag when
it is imported; `defaults` fill unset ones) and every run's "lr" (client
learning rate), "clients" (N), "rank" and "lora_alpha" (LoRA's scaling α/r).

What this lets a strategy do: add to the local loss (FedProx), correct gradients and keep
per-client state (SCAFFOLD), keep server state (FedAvgM/FedAdam/FedYogi/FedAdagrad), change which
tensors train (FFA-LoRA: `trains` false for A), share only some tensors (FedSA-LoRA: `shares` A
only, B in client_state, `start` = global A + own B), merge into the base weights (FLoRA,
FedEx-LoRA: `base_delta`, with what clients need to replay it in the downlink).

No torch import at module level: `cllora.config` validates `strategy` against STRATEGIES and the CLI
builds its help without torch. A run's states go into one checkpoint via
`checkpoint_state.pack_state`; bytes per round are counted by `traffic.round_bytes`.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from cllora.aggregate.base import Aggregated, ClientView, LocalPlan, Option, Options, Reply, State, Strategy
from cllora.aggregate.drift import DRIFT_COLUMNS, client_drift
from cllora.aggregate.fedavg import FEDAVG, fedavg
from cllora.aggregate.fedex_lora import FEDEX_LORA
from cllora.aggregate.fedsa_lora import FEDSA_LORA
from cllora.aggregate.ffa_lora import FFA_LORA
from cllora.aggregate.flora import FLORA
from cllora.aggregate.prox import FEDPROX
from cllora.aggregate.scaffold import SCAFFOLD
from cllora.aggregate.server_opt import FEDADAGRAD, FEDADAM, FEDAVGM, FEDYOGI
from cllora.aggregate.traffic import BYTES_PER_PARAM, round_bytes, state_nbytes

STRATEGIES: dict[str, Strategy] = {s.name: s for s in (FEDAVG, FEDPROX, SCAFFOLD, FEDAVGM, FEDADAM,
                                                      FEDYOGI, FEDADAGRAD, FFA_LORA, FLORA, FEDEX_LORA,
                                                      FEDSA_LORA)}
RUN_OPTIONS = ("lr", "clients", "rank", "lora_alpha")  # run facts every strategy may read
MERGES_BASE = (FLORA.name, FEDEX_LORA.name)  # change the base model (server's and clients')


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}; got {name!r}")
    return STRATEGIES[name]


def needs_individual(name: str) -> str:
    """What strategy `name`'s server step needs of each client beyond the weighted mean of the
    adapters (Strategy.individual; "" for nothing, a reason for an unknown name)."""
    return STRATEGIES[name].individual if name in STRATEGIES else f"{name!r} is not a known strategy"


def mean_only_strategies() -> list[str]:
    """The strategies whose server step needs only the weighted mean of the adapters."""
    return [s.name for s in STRATEGIES.values() if not s.individual]


def declared_options() -> dict[str, Option]:
    """Every option some strategy declares, by name, in registry order (the RunConfig fields and
    flags cllora.config and cllora.commands generate); one name, one declaration."""
    found: dict[str, Option] = {}
    for strategy in STRATEGIES.values():
        for option in strategy.options:
            if found.setdefault(option.name, option) != option:
                raise ValueError(f"strategy {strategy.name!r} declares option {option.name!r} differently "
                                 "from an earlier strategy; declare it once and share it")
    return found


def strategy_option_names() -> tuple[str, ...]:
    """Every config field some strategy reads (in registry order, no repeats)."""
    return tuple(declared_options())


def option_users(option: str) -> list[str]:
    """The strategies that read `option`."""
    return [s.name for s in STRATEGIES.values() if option in (o.name for o in s.options)]


def unused_options(name: str, values: Mapping[str, Any], defaults: Mapping[str, Any]) -> list[str]:
    """The strategy options set to a non-default value although strategy `name` does not read them."""
    used = {o.name for o in get_strategy(name).options}
    return [o for o in strategy_option_names()
            if o not in used and o in values and values[o] != defaults.get(o)]


def strategy_options(name: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The options strategy `name` runs with: its config values (unset ones from its `defaults`,
    which may be functions of the other options) plus the run facts lr and clients."""
    strategy = get_strategy(name)
    opts = {o: values[o] for o in tuple(o.name for o in strategy.options) + RUN_OPTIONS}
    for key, default in strategy.defaults.items():
        if opts.get(key) is None:
            opts[key] = default(opts) if callable(default) else default
    return opts


def aggregate(strategy: str, states: Sequence[State], weights: Sequence[float]) -> State:
    """The next global adapter for a strategy whose server step is FedAvg (fedavg, fedprox)."""
    chosen = get_strategy(strategy)
    if chosen.aggregate is not FEDAVG.aggregate:
        raise ValueError(f"strategy {strategy!r} keeps server state; step it with its Strategy record")
    return fedavg(states, weights)


def check_update(state: State | None, reference: State) -> str | None:
    """Why a client's update cannot join the average (None when it can): it must hold exactly the
    reference's tensor names, with the same shapes and dtypes, and only finite values."""
    import torch

    if state is None:
        return "no adapter in the reply"
    if state.keys() != reference.keys():
        extra = sorted(state.keys() - reference.keys())
        missing = sorted(reference.keys() - state.keys())
        return (f"unexpected tensor names (extra: {', '.join(extra[:2]) or 'none'}; "
                f"missing: {', '.join(missing[:2]) or 'none'})")
    for key, ref in reference.items():
        tensor = state[key]
        if not isinstance(tensor, torch.Tensor):
            return f"{key} is a {type(tensor).__name__}, not a tensor"
        if tuple(tensor.shape) != tuple(ref.shape):
            return f"{key} has shape {tuple(tensor.shape)}, expected {tuple(ref.shape)}"
        if tensor.dtype != ref.dtype:
            return f"{key} has dtype {tensor.dtype}, expected {ref.dtype}"
        if not bool(torch.isfinite(tensor).all()):
            return f"{key} holds NaN or Inf"
    return None



__all__ = ["Aggregated", "BYTES_PER_PARAM", "ClientView", "DRIFT_COLUMNS", "LocalPlan", "Option", "Options",
           "Reply", "STRATEGIES", "State", "Strategy", "aggregate", "check_update", "client_drift",
           "declared_options", "fedavg", "get_strategy", "option_users", "round_bytes", "state_nbytes",
           "strategy_option_names", "strategy_options", "unused_options"]
