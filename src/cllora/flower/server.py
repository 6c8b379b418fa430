"""The Flower engine's server side: the same experiment's round loop over Flower SuperNodes.

The ServerApp runs cllora's own round loop (`engine.run_experiment`) with `FlowerClients`:
local training and the per-client test losses go out as Flower messages (Message API) to
SuperNodes, whose ClientApp is `cllora.flower.client`; sampling, payload checks, FedAvg,
evaluation on the global test set, the run directory and resume are the in-process engine's code.
Replies are pulled every PULL_INTERVAL seconds (Flower's `send_and_receive` sleeps 3 s).

The server checks what a client claims as its FedAvg weight: a partition client must report its
partition's size (the server prepares the same data); a client with its own texts, whose size
the server cannot know, weighs at most `max-client-examples` (run config). A `flwr run`
deployment writes each message's time breakdown to `flower_messages.csv` (`cllora.flower.timing`).

Two ways in:
  * `run_flower_simulation(config, out)` (`cllora run --engine flower-sim`): Flower's simulation
    engine, one virtual SuperNode per client.
  * `flwr run APP_DIR` against a SuperLink with SuperNodes (`cllora flower-app DIR` writes the
    app directory); the ServerApp then reads its settings from Flower's run config.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Callable, NamedTuple

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from cllora.config.load import load_config
from cllora.config.settings import RunConfig, check_keys, parse_class_edges
from cllora.engine.runtime import default_gpu_share
from cllora.errors import RunFailed, UserError
from cllora.flower import timing
from cllora.flower.client import client_app, secure_client_app
from cllora.flower.supernodes import DEFAULT_MAX_CLIENT_EXAMPLES, FlowerClients
from cllora.report.run_figures import drawing_figures

APP_ENV = {"FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1"}  # never reinstall torch per run


# ---------------------------------------------------------------- messages

class ServerSettings(NamedTuple):
    """What the ServerApp reads from Flower's run config."""

    config: RunConfig
    out: Path
    resume: bool = False
    overwrite: bool = False
    max_client_examples: int = DEFAULT_MAX_CLIENT_EXAMPLES


def _serve(grid: Grid, settings: ServerSettings, log: Callable[[str], None], progress=None,
           timings: bool = False) -> dict:
    """The run on `grid`; with `timings`, each message's breakdown goes to flower_messages.csv."""
    from cllora.engine.loop import run_experiment  # lazy: torch, transformers

    def clients(exp, _progress):
        path = settings.out / timing.FILE if timings else None
        if path is not None and not settings.resume:
            path.unlink(missing_ok=True)  # an overwritten run's rows go with it
        return FlowerClients(grid, exp, log, max_client_examples=settings.max_client_examples,
                             timings=path)

    return run_experiment(settings.config, settings.out, resume=settings.resume,
                          overwrite=settings.overwrite, log=log, progress=progress, clients=clients)


def settings_from_run_config(run_config: dict[str, Any]) -> ServerSettings:
    """The settings from Flower's run config: `config-file` (a cllora TOML), `out`, `resume`,
    `overwrite`, `max-client-examples`, and any RunConfig key (kebab- or snake-case) as an override."""
    values = {k.replace("-", "_"): v for k, v in run_config.items()}
    config_file = values.pop("config_file", "") or None
    out = Path(values.pop("out", "") or "runs/flower")
    resume, overwrite = bool(values.pop("resume", False)), bool(values.pop("overwrite", False))
    cap = values.pop("max_client_examples", DEFAULT_MAX_CLIENT_EXAMPLES)
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
        raise UserError(f"run-config max-client-examples must be a whole number ≥ 1, got {cap!r}")
    check_keys(values, "run-config (besides config-file, out, resume, overwrite, max-client-examples)")
    if isinstance(values.get("class_edges"), str):  # run configs hold no lists: "10,20,40,80"
        values["class_edges"] = parse_class_edges(values["class_edges"], "run-config class-edges")
    return ServerSettings(load_config(config_file, **values), out, resume, overwrite, cap)


server_app = ServerApp()


@server_app.main()
def _main(grid: Grid, context: Context) -> None:
    """`flwr run`: settings from the run config; results (and flower_messages.csv) into `out`."""
    settings = settings_from_run_config(dict(context.run_config))
    summary = _serve(grid, settings, print, drawing_figures(), timings=True)  # figures, as cllora.runner draws
    print(f"cllora: run finished, final test loss {summary['final_test_loss']:.4f}; results: {settings.out}")


def run_flower_simulation(config: RunConfig, out: Path, *, resume: bool = False, overwrite: bool = False,
                          log: Callable[[str], None] = print, progress=None, clients_app=None) -> dict:
    """`cllora run --engine flower-sim`: the run through Flower's simulation engine (Ray), one
    virtual SuperNode per client, as many running at once as there are CPU cores (or GPUs). With
    secagg the ClientApp trains only inside SecAgg+ (`secure_client_app`); `clients_app` replaces
    the ClientApp (tests drop clients with a mod)."""
    from flwr.simulation import run_simulation

    outcome: dict[str, Any] = {}
    app = ServerApp()

    @app.main()
    def _simulated(grid: Grid, context: Context) -> None:
        outcome["summary"] = _serve(grid, ServerSettings(config, Path(out), resume, overwrite), log, progress)

    cpus = max(1, os.cpu_count() or 1)
    backend = {"client_resources": {"num_cpus": 1, "num_gpus": client_gpus(config, log)},
               "init_args": {"num_cpus": cpus, "include_dashboard": False, "logging_level": "error",
                             "log_to_driver": False}}
    for key, value in APP_ENV.items():
        os.environ.setdefault(key, value)
    warnings.filterwarnings("ignore", message="Tip: In future versions of Ray", category=FutureWarning)
    chosen = clients_app or (secure_client_app if config.secagg else client_app)
    with _flower_quiet(progress is None or not progress.enabled):  # --quiet: no Flower banners either
        run_simulation(server_app=app, client_app=chosen, num_supernodes=config.clients,
                       backend_config=backend)
    if "summary" not in outcome:
        raise RunFailed(f"the Flower simulation ended without finishing the run; what it wrote is in {out}")
    return outcome["summary"]


@contextlib.contextmanager
def _flower_quiet(quiet: bool):
    """Flower's own log (its deprecation banner for run_simulation, its INFO lines) shows errors
    only while `quiet`; its level is restored after."""
    flwr_log = logging.getLogger("flwr")
    level = flwr_log.level
    if quiet:
        flwr_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        flwr_log.setLevel(level)


def client_gpus(config: RunConfig, log: Callable[[str], None] = print) -> float:
    """The share of a GPU each virtual client declares: `client_gpus` if set, else as many clients
    as fit in the GPU's memory share it (cllora.engine.runtime.default_gpu_share); 0 on the CPU."""
    if config.client_gpus is not None:
        return config.client_gpus
    if config.device == "cpu" or not _cuda_available():
        return 0.0
    share, why = default_gpu_share([config])
    log(f"flower-sim: each client declares {share:g} GPU ({why}; --client-gpus overrides)")
    return share


def _cuda_available() -> bool:
    import torch  # lazy: the server module loads without torch

    return torch.cuda.is_available()
