"""The strategy interface: the `Strategy` record and the small types its functions exchange.

No torch import here (`cllora.config` reads the registry to validate `strategy`, and the CLI builds its
help without torch): tensors are handled through their methods only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

if TYPE_CHECKING:
    import torch

State = dict  # tensor name → tensor (adapter states, server state, client state, extra payloads)
Options = Mapping[str, Any]  # the strategy's hyperparameters by config name, plus "lr" and "clients"
Params = Mapping[str, "torch.nn.Parameter"]  # the trainable adapter tensors by name, on the device


@dataclass(frozen=True)
class Reply:
    """What the server receives from one client whose update passed the payload checks."""

    state: State  # the client's adapter after local training
    weight: float  # its number of local training examples
    extra: State = field(default_factory=dict)  # strategy uplink beside the adapter (SCAFFOLD: Δc_i)
    client_id: int = -1


@dataclass(frozen=True)
class Aggregated:
    """The server's step: the next global adapter, the next server state, and (for strategies that
    fold updates into the frozen model, e.g. FLoRA / FedEx-LoRA) deltas to add to base weights."""

    global_state: State
    server_state: State = field(default_factory=dict)
    base_delta: State = field(default_factory=dict)  # base-weight name → tensor to add (empty: none)


@dataclass(frozen=True)
class ClientView:
    """What one client knows in a round: the global adapter and the strategy's downlink (both
    from the server), its own saved state (empty before its first round), the options, and a
    seed of its own for the round (derived from the run's seed, the round and the client)."""

    global_state: State
    downlink: State
    client_state: State
    options: Options
    seed: int | None = None  # this client's seed for this round, for a strategy that draws (FLoRA)


def every_tensor(name: str) -> bool:
    return True


@dataclass(frozen=True)
class LocalPlan:
    """How a client trains this round. `loss_term(params)` is added to each batch's loss (None:
    nothing added); `grad_hook(params)` runs after backward, before the optimizer step;
    `trains(name)` says which adapter tensors the optimizer updates (the others stay fixed)."""

    start: State  # the adapter the client starts from (usually the global one)
    loss_term: Callable[[Params], Any] | None = None
    grad_hook: Callable[[Params], None] | None = None
    trains: Callable[[str], bool] = every_tensor

    def bind(self, params: Params) -> tuple[Callable[[], Any] | None, Callable[[], None] | None]:
        """(loss_term, grad_hook) as argument-free callables over these parameters (None where the
        plan has none): what `cllora.train.StepHooks` takes."""
        loss = None if self.loss_term is None else (lambda: self.loss_term(params))
        hook = None if self.grad_hook is None else (lambda: self.grad_hook(params))
        return loss, hook


def plain_local(view: ClientView) -> LocalPlan:
    """FedAvg's client: start from the global adapter, train every adapter tensor, nothing added."""
    return LocalPlan(view.global_state)


def no_client_state(view: ClientView, trained: State, steps: int) -> tuple[State, State]:
    """A client that sends nothing beyond its adapter and keeps no state between rounds."""
    return {}, {}


def no_server_state(global_state: State, options: Options) -> State:
    return {}


def no_downlink(state: State) -> State:
    return {}


@dataclass(frozen=True)
class Option:
    """A setting a strategy reads, declared once beside the strategy. cllora.config makes it a
    RunConfig field (placed after `strategy`) with this default, checks its type (a number; None too
    where the default is None) and bounds, and refuses it for a strategy that does not declare it;
    cllora.commands makes it a `--flag` with this help and metavar."""

    name: str  # the config key; the flag is its kebab-case form
    default: float | None  # None: unset, the strategy's `defaults` give its value
    help: str  # one line: which strategies read it, what it does, units and defaults
    metavar: str
    low: float = 0.0  # the smallest allowed value
    low_open: bool = False  # True: `low` itself is refused too (> low instead of >= low)
    below: float | None = None  # values at or above this are refused (None: no upper bound)

    @property
    def annotation(self) -> str:
        """Its RunConfig field's type."""
        return "float" if self.default is not None else "float | None"


@dataclass(frozen=True)
class Strategy:
    """One federated algorithm as plain functions, state in → state out (see the package docstring
    for the round protocol). Only `name`, `paper` and `aggregate` are required."""

    name: str
    paper: str  # citation and formula, one line (shown in docs and help)
    aggregate: Callable[[State, State, Sequence[Reply], Options], Aggregated]
    options: tuple[Option, ...] = ()  # the settings it reads (each becomes a RunConfig field and a flag)
    defaults: Mapping[str, float] = field(default_factory=dict)  # for options whose config value is None
    init_server: Callable[[State, Options], State] = no_server_state
    downlink: Callable[[State], State] = no_downlink  # server state → extra tensors sent to each client
    local: Callable[[ClientView], LocalPlan] = plain_local
    finish: Callable[[ClientView, State, int], tuple[State, State]] = no_client_state
    shares: Callable[[str], bool] = every_tensor  # which adapter tensors travel (both directions)
    personal: bool = False  # each client's model is its own (its local start), not the global one
    uplink: Callable[[State], State] = no_downlink  # global adapter → the `extra` a client must send
    # (zeros of the right names, shapes, dtypes: the server checks every reply's extra against it)
    # What the server's step needs of each client beyond the weighted mean of the adapters, in a
    # phrase ("" for nothing): client-level DP (cllora.privacy.settings) and secure aggregation
    # (cllora.privacy.secagg) compose only with strategies that need nothing more, and say this
    # phrase when they refuse one.
    individual: str = ""
