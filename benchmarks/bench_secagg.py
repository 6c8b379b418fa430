"""What secure aggregation (SecAgg+ through Flower) costs per round against the plain weighted mean.

  python benchmarks/bench_secagg.py [--repeats N] [--run]

Protocol, on the adapters' shapes (random entries, no training): K clients each hold an adapter of
the tests' tiny OPT (2 layers, d = 64, r = 4 on q/v) or of smollm2-135m (30 layers, r = 8 on q/v; meta
device, no weights). The full SecAgg+ round (Flower's SecAggPlusWorkflow and secaggplus_mod, all four
stages: keys, encrypted shares, masked vectors, unmasking) runs in this one process over an
in-memory grid, so "seconds" is the compute of the server *and all K clients together*, without
network or training; "plain" is the weighted mean the server computes without it. Bytes are
payloads (arrays, bytes and numbers; no framing) the server sends (down) and receives (up) in a round;
plain: the adapter down and up once per client, fp32.
With --run, two tiny-model runs of Flower's simulation engine (3 clients, all 3 a round, 2 rounds),
plain and secure, one after the other: seconds per round from their rounds.csv.
Prints markdown tables to paste into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from bench_strategies import machine  # noqa: E402  (the sibling script: same machine line)
from flwr.app import Context, Message, RecordDict  # noqa: E402
from flwr.client.mod import secaggplus_mod  # noqa: E402
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters  # noqa: E402
from flwr.compat.common import recorddict_compat as compat  # noqa: E402
from flwr.supercore.task_identity import TaskIdentity  # noqa: E402

from cllora.flower.secure import secure_round  # noqa: E402
from cllora.privacy import secagg  # noqa: E402


def shapes(model: str) -> list[tuple[int, int]]:
    if model == "tiny-opt":  # tests/conftest.py: hidden 64, 2 layers, r = 4 on q_proj and v_proj
        return [(4, 64), (64, 4)] * 4
    from cllora.commands.params import meta_adapter

    return [tuple(t.shape) for t in meta_adapter("smollm2-135m", 8, 16.0, ("q_proj", "v_proj")).values()]


class MemoryGrid:
    """Each message handed to its node's ClientApp stack (secaggplus_mod) at once, in this process."""

    def __init__(self, arrays: dict[int, list[np.ndarray]], weights: dict[int, int]):
        self.arrays, self.weights = arrays, weights
        self.contexts = {n: Context(run_id=0, node_id=n, node_config={}, state=RecordDict(), run_config={})
                         for n in arrays}

    def _train(self, msg: Message, context: Context) -> Message:
        node = msg.metadata.dst_node_id
        fitres = FitRes(Status(Code.OK, ""), ndarrays_to_parameters(self.arrays[node]), self.weights[node], {})
        return Message(compat.fitres_to_recorddict(fitres, True), reply_to=msg)

    def send_and_receive(self, messages, timeout=None):
        replies = []
        for msg in messages:
            reply = secaggplus_mod(copy.deepcopy(msg), self.contexts[msg.metadata.dst_node_id], self._train)
            reply.metadata.__dict__["_src_node_id"] = msg.metadata.dst_node_id
            replies.append(reply)
        return replies


def protocol_rows(repeats: int) -> list[str]:
    for name in ("_run_id", "_node_id", "_task_id"):
        setattr(TaskIdentity, name, 1)
    rows = []
    for model in ("tiny-opt", "smollm2-135m"):
        dims = shapes(model)
        params = sum(a * b for a, b in dims)
        for k in (2, 5, 10):
            rng = np.random.default_rng(k)
            arrays = {100 + i: [rng.normal(0, 0.02, d).astype(np.float32) for d in dims] for i in range(k)}
            weights = {n: 16 for n in arrays}
            plain_s, secure_s, result = [], [], None
            for _ in range(repeats):
                start = time.perf_counter()
                [sum(weights[n] * arrays[n][i] for n in arrays) / sum(weights.values()) for i in range(len(dims))]
                plain_s.append(time.perf_counter() - start)
                start = time.perf_counter()
                result = secure_round(MemoryGrid(arrays, weights), {n: (a, {}) for n, a in arrays.items()}, 1,
                                      *secagg.protocol(k, None, None), 16, None)
                secure_s.append(time.perf_counter() - start)
            plain_bytes = k * params * 4
            rows.append(f"| {model} | {params:,} | {k} | {plain_bytes / 1e6:.3f} | {plain_bytes / 1e6:.3f} | "
                        f"{result.bytes_down / 1e6:.3f} | {result.bytes_up / 1e6:.3f} | "
                        f"{(result.bytes_down + result.bytes_up) / (2 * plain_bytes):.2f}× | "
                        f"{1000 * statistics.median(plain_s):.2f} | {statistics.median(secure_s):.2f} |")
    return rows


def run_rows() -> list[str]:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import make_tiny_opt
    from test_engine import tiny_config

    from cllora import records
    from cllora.flower.server import run_flower_simulation

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model = str(make_tiny_opt(Path(tmp) / "model"))
        config = tiny_config(model, clients=3, clients_per_round=3, rounds=2, engine="flower-sim")
        for label, cfg in (("plain", config), ("SecAgg+", config.replace(secagg=True))):
            out = Path(tmp) / label
            start = time.perf_counter()
            run_flower_simulation(cfg, out, log=lambda m: None)
            whole = time.perf_counter() - start
            rs = [r for r in records.read_csv(out / "rounds.csv") if r["round"] > 0]
            mean = {k: statistics.mean(r[k] for r in rs) for k in ("train_seconds", "round_seconds", "bytes_up",
                                                                   "bytes_down")}
            rows.append(f"| {label} | {mean['train_seconds']:.2f} | {mean['round_seconds']:.2f} | "
                        f"{mean['bytes_up'] / 1e3:.1f} | {mean['bytes_down'] / 1e3:.1f} | {whole:.1f} |")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--run", action="store_true")
    args = p.parse_args()
    print(machine())
    print(f"\nSecAgg+ round against the plain weighted mean (median of {args.repeats}; seconds: server and all "
          "clients in one process, no network, no training)")
    print("| adapter | params | clients K | plain MB down | plain MB up | SecAgg+ MB down | SecAgg+ MB up | "
          "bytes × plain | plain mean ms | SecAgg+ round s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(protocol_rows(args.repeats)))
    if args.run:
        print("\nFlower simulation, tiny OPT, 3 clients all in every round, 2 rounds (means of rounds 1-2)")
        print("| run | train s | round s | kB up | kB down | whole run s |")
        print("|---|---:|---:|---:|---:|---:|")
        print("\n".join(run_rows()))


if __name__ == "__main__":
    main()
