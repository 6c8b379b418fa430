"""`cllora flower-app`: write a Flower app directory that runs a cllora experiment on real SuperNodes."""

from __future__ import annotations

import argparse
from pathlib import Path

NEXT_STEPS = """\
wrote {path}
next (one machine, loopback; see the README for TLS, SuperNode authentication and several machines):
  export FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1
  flower-superlink --insecure --host 127.0.0.1 --port 9200 &
  flower-supernode --insecure --superlink 127.0.0.1:9200 --port 9201 --node-config "partition-id=0 num-partitions={n}" &
  ...one SuperNode per client: partition-id 0..{last}, each with its own --port; on one host add
     num-threads=T to each node config (T = cores / SuperNodes; default: all cores per ClientApp)
  printf '[superlink]\\ndefault = "local"\\n[superlink.local]\\naddress = "127.0.0.1:9200"\\ninsecure = true\\n' > ~/.flwr/config.toml
  flwr run {app_dir} local --stream
  flwr ls local            # status finished:completed, or finished:failed with the reason
results will be in {out}"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "flower-app", help="write a Flower app directory to run an experiment on real SuperNodes",
        description="Write DIR/pyproject.toml: a Flower app whose ServerApp and ClientApp are "
                    "cllora.flower.server's and cllora.flower.client's, set to run the experiment of --config "
                    "into --out. Start a SuperLink and one SuperNode per client (node config "
                    "partition-id, num-partitions, "
                    "or data-path for a client with its own texts; num-threads for torch), then "
                    "`flwr run DIR`. The run writes the same files as `cllora run`, so `cllora report` "
                    "works on it, plus flower_messages.csv (where each message's time went).",
        epilog="Example:\n  cllora flower-app flower-app --config exp.toml --out runs/flower1",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", metavar="DIR", help="app directory to write (created if missing)")
    p.add_argument("--config", metavar="FILE.toml", help="the experiment's settings, as for `cllora run` "
                                                         "[defaults of cllora run]")
    p.add_argument("--out", metavar="DIR", default="runs/flower", help="run directory [runs/flower]")
    p.add_argument("--secagg", action="store_true", default=None,
                   help="secure aggregation (SecAgg+, Flower's own): the server learns only the weighted "
                        "mean of the sampled clients' adapters [off, or the config file's secagg]")
    p.add_argument("--secagg-shares", type=int, metavar="S", help="SecAgg+: shares of each client's secrets "
                                                                  "(odd, 3..K) [K = clients_per_round]")
    p.add_argument("--secagg-threshold", type=int, metavar="T", help="SecAgg+: shares that rebuild a secret "
                                                                     "(2..S) [a majority]")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cllora.config.load import load_config  # lazy: the CLI starts without any command's dependencies
    from cllora.errors import UserError  # lazy: the CLI starts without any command's dependencies
    from cllora.records import (  # lazy: the CLI starts without any command's dependencies
        check_output_dir,
        is_sweep_dir,
    )

    try:
        from cllora.flower.app import write_app  # lazy: the CLI starts without any command's dependencies
    except ImportError as exc:
        raise UserError(f"flower-app needs Flower: pip install 'cllora[flower]' ({exc})") from None
    secagg = {"secagg": args.secagg, "secagg_shares": args.secagg_shares,
              "secagg_threshold": args.secagg_threshold}
    config = load_config(args.config, **secagg)  # validate the settings now, not inside Flower
    app_dir, out = Path(args.dir), Path(args.out)
    check_output_dir(app_dir, "DIR")
    check_output_dir(out, "--out")
    if is_sweep_dir(out):
        raise UserError(f"--out {str(out)!r} holds a sweep (index.json); a run needs its own folder")
    path = write_app(app_dir, Path(args.config) if args.config else None, out,
                     {k: v for k, v in secagg.items() if v is not None} or None)
    print(NEXT_STEPS.format(path=path, n=config.clients, last=config.clients - 1, app_dir=app_dir,
                            out=out.resolve()))
    return 0
