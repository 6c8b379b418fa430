"""A plain Flower-simulation app for federated LoRA, following Flower's LLM fine-tuning template
(`flwr new` FlowerTune: a ClientApp that loads the model, sets the received PEFT weights, trains
and replies; a ServerApp running Flower's `FedAvg` with a centralized `evaluate_fn`), as the
baseline of benchmarks/bench_eval.py (issue 11).

  python benchmarks/flower_baseline.py RESULT.json [--clients 20] [--rounds 3] ...

Same work as the cllora run it is compared with: the same texts and client splits (cllora's data
preparation, so both train on exactly the same rows), LoRA r=8 on q/v, AdamW, batch 8, one local
epoch, 2 clients per round; the template's way: every text padded to max_length (128), the model
loaded and wrapped with peft on every train message, server-side evaluation of the global test
texts only (before round 1 and after each round). Local training is a plain torch loop (the
template uses trl's SFTTrainer, not installed here; a plain loop is if anything faster).
Writes timings and losses to RESULT.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION", "1")
os.environ.setdefault("RAY_DISABLE_DOCKER_CPU_WARNING", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict  # noqa: E402
from flwr.clientapp import ClientApp  # noqa: E402
from flwr.serverapp import Grid, ServerApp  # noqa: E402
from flwr.serverapp.strategy import FedAvg  # noqa: E402

from cllora.config.settings import RunConfig, from_dict  # noqa: E402

# ---------------------------------------------------------------- models.py / dataset.py of the template

def get_model(config: RunConfig):
    """The base model with fresh LoRA adapters (peft), seeded; the template's get_model."""
    from peft import LoraConfig, get_peft_model

    from cllora.model import load_model, resolve_precision

    precision = resolve_precision(config.precision, torch.device("cpu"))
    base = load_model(config.model, "cpu", precision, log=lambda m: None)
    torch.manual_seed(config.seed)
    lora = LoraConfig(r=config.rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=list(config.targets), task_type="CAUSAL_LM")
    model = get_peft_model(base, lora)
    for name, p in model.named_parameters():
        if "lora_" in name:
            p.data = p.data.float()
    return model


_DATA = {}


def load_data(config: RunConfig):
    """Tokenized texts and client splits (cllora's preparation: the same rows as the cllora run)."""
    if "data" not in _DATA:
        from cllora.engine.experiment import prepare_data
        from cllora.model import load_tokenizer

        _DATA["data"] = prepare_data(config, load_tokenizer(config.model, log=lambda m: None), lambda m: None)
    return _DATA["data"]


def padded(ids: list[np.ndarray], max_length: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad (and truncate) every text to max_length, as the template's tokenizer call does."""
    input_ids = torch.full((len(ids), max_length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), max_length), dtype=torch.long)
    for i, seq in enumerate(ids):
        seq = seq[:max_length]
        input_ids[i, :len(seq)] = torch.from_numpy(seq.astype(np.int64))
        mask[i, :len(seq)] = 1
    return input_ids, mask


def lora_state(model) -> dict:
    from peft import get_peft_model_state_dict

    return {k: v.detach().float().cpu() for k, v in get_peft_model_state_dict(model).items()}


def set_lora_state(model, arrays: ArrayRecord) -> None:
    from peft import set_peft_model_state_dict

    set_peft_model_state_dict(model, arrays.to_torch_state_dict())


# ---------------------------------------------------------------- client_app.py

client_app = ClientApp()


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    """Load the model, set the global LoRA weights, one local epoch on this partition, reply."""
    config = from_dict(json.loads(msg.content["config"]["run"]))  # sent by the server each round
    torch.set_num_threads(1)  # one CPU per virtual client (Ray's client_resources)
    pid = int(context.node_config["partition-id"])
    data = load_data(config)
    model = get_model(config)
    set_lora_state(model, msg.content["arrays"])
    rows = data.client_train[pid]
    rng = np.random.default_rng([config.seed, int(msg.content["config"]["server-round"]), pid])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr, weight_decay=0.0)
    model.train()
    start, losses = time.perf_counter(), []
    order = rows[rng.permutation(len(rows))]
    for i in range(0, len(order), config.batch_size):
        input_ids, mask = padded([data.train_ids[r] for r in order[i:i + config.batch_size]],
                                 config.max_length, data.pad_id)
        loss = model(input_ids=input_ids, attention_mask=mask, labels=input_ids.masked_fill(mask == 0, -100)).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    metrics = MetricRecord({"train_loss": float(np.mean(losses)), "num-examples": len(rows),
                            "train-seconds": time.perf_counter() - start})
    return Message(RecordDict({"arrays": ArrayRecord(lora_state(model)), "metrics": metrics}), reply_to=msg)


# ---------------------------------------------------------------- server_app.py

def get_evaluate_fn(model, config: RunConfig, log: list):
    """Centralized evaluation: token-weighted loss of the global LoRA on the global test texts."""
    data = load_data(config)

    @torch.no_grad()
    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        start = time.perf_counter()
        set_lora_state(model, arrays)
        model.eval()
        total, tokens = 0.0, 0
        for i in range(0, len(data.test_ids), config.batch_size):
            input_ids, mask = padded(data.test_ids[i:i + config.batch_size], config.max_length, data.pad_id)
            logits = model(input_ids=input_ids, attention_mask=mask).logits[:, :-1].float()
            target_mask = mask[:, 1:].bool()
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                     input_ids[:, 1:].reshape(-1), reduction="none")
            total += float((loss.view(target_mask.shape) * target_mask).sum())
            tokens += int(target_mask.sum())
        log.append({"round": server_round, "loss": total / tokens, "eval_seconds": time.perf_counter() - start,
                    "at": time.perf_counter()})
        return MetricRecord({"loss": total / tokens})

    return evaluate


server_app = ServerApp()
RESULT: dict = {}
RUN_JSON: list[str] = []  # the run's config, set before the simulation (the ServerApp runs in this process)


@server_app.main()
def main_server(grid: Grid, context: Context) -> None:
    config = from_dict(json.loads(RUN_JSON[0]))
    model = get_model(config)  # the server's copy: initial arrays and centralized evaluation
    evals: list = []
    strategy = FedAvg(fraction_train=config.clients_per_round / config.clients, fraction_evaluate=0.0,
                      min_train_nodes=config.clients_per_round, min_available_nodes=config.clients)
    result = strategy.start(grid=grid, initial_arrays=ArrayRecord(lora_state(model)), num_rounds=config.rounds,
                            train_config=ConfigRecord({"run": RUN_JSON[0]}),
                            evaluate_fn=get_evaluate_fn(model, config, evals))
    RESULT.update({"evals": evals, "train_metrics": {str(k): dict(v) for k, v in
                                                      result.train_metrics_clientapp.items()}})


def run(config: RunConfig) -> dict:
    from flwr.simulation import run_simulation

    cpus = max(1, os.cpu_count() or 1)
    backend = {"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
               "init_args": {"num_cpus": cpus, "include_dashboard": False, "logging_level": "error",
                             "log_to_driver": False}}
    start = time.perf_counter()
    RUN_JSON[:] = [json.dumps(config.to_dict())]
    run_simulation(server_app=server_app, client_app=client_app, num_supernodes=config.clients,
                   backend_config=backend)
    RESULT["wall_inside"] = time.perf_counter() - start
    return RESULT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("result", type=Path)
    parser.add_argument("--config", required=True, help="the cllora RunConfig as JSON")
    args = parser.parse_args()
    out = run(from_dict(json.loads(args.config)))
    if not out.get("evals"):
        sys.exit("the Flower simulation ended without a result")
    args.result.write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
