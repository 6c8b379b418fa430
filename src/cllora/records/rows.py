"""One round's rows of rounds.csv and clients.csv, filled from what the engine measured
(`RoundScores`, the updates, bytes and times); the columns themselves, and those derived from the
rest of their row, are declared in cllora.records.columns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cllora.metrics import excess_variance, fairness, fairness_noise, perplexity
from cllora.records.columns import CLIENT_TABLE, ROUND_TABLE, Column, derived


@dataclass
class RoundScores:
    """A round's evaluations: the global model on the global test set and on every client's split,
    and each participating client's local model: {client: (global test loss, own split loss)}.
    `client_losses` (and their standard errors) are None where the all-client pass did not run;
    `class_losses` are the global test loss per length class; `test_texts` the per-text losses
    (cllora.engine.evaluation.TestTexts) behind test_losses.npz."""

    test_loss: float
    client_losses: np.ndarray | None
    local: dict[int, tuple[float | None, float | None]] = field(default_factory=dict)
    local_se: dict[int, float | None] = field(default_factory=dict)  # of each local model's own-split loss
    client_se: np.ndarray | None = None
    client_texts: np.ndarray | None = None  # texts in each client's local test split
    class_losses: list[float] = field(default_factory=list)
    test_texts: Any = None
    split_texts: Any = None  # cllora.engine.evaluation.SplitTexts behind split_losses.npz


def round_row(round_num: int, scores: RoundScores | None, updates: list, bytes_up: int, bytes_down: int,
              bytes_cumulative: int, train_s: float, eval_s: float, overhead_s: float,
              drift: dict | None = None, agg_error: dict | None = None) -> dict:
    """One rounds.csv row; `scores` is None in a round that was not evaluated (empty columns);
    `drift` holds the clients' drift (cllora.aggregate.drift) and `agg_error` the aggregation
    error of their adapters (cllora.aggregate.error), both None in round 0."""
    good = [u for u in updates if not u.failed]
    train_losses = [u.result.train_loss for u in good]
    return _with_derived(ROUND_TABLE, {
        "round": round_num, **_evaluation_columns(scores),
        "num_participants": len(updates), "num_failed": len(updates) - len(good),
        "train_loss_mean": float(np.mean(train_losses)) if train_losses else None, **(drift or {}),
        **(agg_error or {}),
        "bytes_up": bytes_up, "bytes_down": bytes_down,
        "bytes_cumulative": bytes_cumulative,
        "train_seconds": train_s, "eval_seconds": eval_s, "overhead_seconds": overhead_s,
        "round_seconds": train_s + eval_s + overhead_s,
    })


def _with_derived(table: dict[str, Column], row: dict) -> dict:
    """The row with the table's derived columns (cllora.records.columns.Column.derive) added."""
    for column in derived(table):
        row[column.name] = column.derive(row)
    return row


def _evaluation_columns(scores: RoundScores | None) -> dict:
    if scores is None:
        return {}
    fair = fairness(scores.client_losses) if scores.client_losses is not None \
        else dict.fromkeys(("mean", "var", "std", "min", "max", "worst10"))  # not measured: empty
    local_own = [own for _, own in scores.local.values() if own is not None]
    own_se = [scores.local_se.get(c) for c, (_, own) in scores.local.items() if own is not None]
    own_se = [np.nan if se is None else se for se in own_se]
    local_global = [glob for glob, _ in scores.local.values() if glob is not None]
    return {**_measurement_columns(scores),
        "global_test_loss": scores.test_loss, "global_test_ppl": perplexity(scores.test_loss),
        "fairness_var": fair["var"], "fairness_std": fair["std"], "fairness_min": fair["min"],
        "fairness_max": fair["max"], "fairness_worst10": fair["worst10"], "fairness_mean": fair["mean"],
        "local_models_test_loss_mean": float(np.mean(local_own)) if local_own else None,
        "local_models_var": float(np.var(local_own)) if local_own else None,
        # unbiased (not floored: may be < 0) so that means over rounds and seeds stay unbiased
        "local_models_var_corrected": excess_variance(local_own, own_se) if local_own and
        np.isfinite(own_se).all() else None,
        "local_models_global_test_loss_mean": float(np.mean(local_global)) if local_global else None,
    }


def _measurement_columns(scores: RoundScores) -> dict:
    """Loss per length class and the fairness statistics beside the variance (cllora.metrics);
    empty where the all-client pass did not run."""
    columns = {f"test_loss_c{c}": v for c, v in enumerate(scores.class_losses)}
    if scores.client_losses is None:
        return columns
    se = scores.client_se if scores.client_se is not None else np.full(len(scores.client_losses), np.nan)
    noise = fairness_noise(scores.client_losses, se)
    return {**columns, "fairness_var_corrected": noise["var_corrected"], "fairness_se_mean": noise["se_mean"],
            "fairness_jain": noise["jain"], "fairness_gini": noise["gini"]}


def _client_measurement(scores: RoundScores | None, cid: int) -> dict:
    """A client's row: the global model's loss on its split, that loss's standard error, its size."""
    if scores is None:
        return {}
    out = {"local_test_texts": None if scores.client_texts is None else int(scores.client_texts[cid])}
    if scores.client_losses is not None:
        out["global_model_local_test_loss"] = float(scores.client_losses[cid])
        if scores.client_se is not None:
            out["global_model_local_test_se"] = float(scores.client_se[cid])
    return out


def client_rows(round_num: int, num_clients: int, updates: list, scores: RoundScores | None,
                ranks: list[int]) -> list[dict]:
    """One clients.csv row per client per round: participation, failure and its reason, training;
    the evaluation columns only in an evaluated round."""
    by_id = {u.client_id: u for u in updates}
    local = scores.local if scores is not None else {}
    local_se = scores.local_se if scores is not None else {}
    rows = []
    for cid in range(num_clients):
        u = by_id.get(cid)
        global_test, own_test = local.get(cid, (None, None))
        rows.append(_with_derived(CLIENT_TABLE, {
            "round": round_num, "client_id": cid, "rank": ranks[cid], "participated": int(u is not None),
            "failed": int(u is not None and u.failed),
            "num_train_examples": None if u is None else u.num_train_examples,
            "train_loss": None if u is None else u.result.train_loss,
            "train_seconds": None if u is None else u.result.seconds,
            "local_model_test_loss": own_test, "local_model_global_test_loss": global_test,
            "local_model_test_se": local_se.get(cid),
            **_client_measurement(scores, cid),
            "error": None if u is None else u.error,
        }))
    return rows
