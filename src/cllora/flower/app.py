"""The Flower app directory `cllora flower-app DIR` writes: a pyproject.toml naming cllora's
ServerApp and ClientApp and declaring the run-config keys, for `flwr run DIR` against a SuperLink."""

from __future__ import annotations

import json
from pathlib import Path

from cllora import __version__
from cllora.config.load import load_toml
from cllora.files import atomic_write_text
from cllora.flower.supernodes import DEFAULT_MAX_CLIENT_EXAMPLES

APP_PYPROJECT = """\
# A Flower app running cllora (written by `cllora flower-app`). Its code is the installed
# package cllora (cllora.flower.server); this file only names it and declares the run-config keys.
# Run it with:  flwr run {app_dir} <connection> --stream
# and override with --run-config "out='/abs/dir' resume=true" (quote strings).
[project]
name = "cllora-flower-app"
version = "{version}"
description = "Federated LoRA fine-tuning under non-IID text (cllora) as a Flower app"
license = "MIT"
dependencies = ["cllora[flower]"]

[tool.flwr.app]
publisher = "cllora"

[tool.flwr.app.components]
serverapp = "cllora.flower.server:server_app"
clientapp = "cllora.flower.client:{client_app}"

[tool.flwr.app.config]
config-file = {config_file}
out = {out}
resume = false
overwrite = false
# FedAvg weight cap of a SuperNode with its own texts (data-path): the server cannot check their number
max-client-examples = {max_client_examples}
{secagg}"""


def write_app(app_dir: Path, config_file: Path | None, out: Path, secagg: dict | None = None) -> Path:
    """Write a Flower app directory (pyproject.toml) that runs `config_file` into `out`. Paths are
    made absolute: the ServerApp runs in the SuperLink's process tree, not in this directory.
    `secagg` (the run's secagg settings, secagg true among them) turns on secure aggregation: the
    settings go into the run config and the ClientApp is the one that trains only inside SecAgg+."""
    settings = {}
    if config_file is not None:
        settings = load_toml(config_file)  # a missing or malformed file is named now, not inside Flower
    secure = bool((secagg or {}).get("secagg") or settings.get("run", settings).get("secagg"))
    app_dir.mkdir(parents=True, exist_ok=True)
    path = app_dir / "pyproject.toml"
    atomic_write_text(path, APP_PYPROJECT.format(
        app_dir=app_dir, version=__version__, out=json.dumps(str(out.resolve())),
        max_client_examples=DEFAULT_MAX_CLIENT_EXAMPLES,
        client_app="secure_client_app" if secure else "client_app",
        secagg="".join(f"{key.replace('_', '-')} = {json.dumps(value)}\n" for key, value in (secagg or {}).items()
                       if value is not None),
        config_file=json.dumps(str(config_file.resolve()) if config_file else "")))
    return path
