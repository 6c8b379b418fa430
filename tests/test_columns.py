"""The column table (cllora.records.columns): the headers it makes, the cores that fill its columns
agree with it, every key a round's row is filled with is declared, and a bad declaration is refused."""

from __future__ import annotations

import numpy as np
import pytest

from cllora import records
from cllora.aggregate.drift import DRIFT_COLUMNS
from cllora.aggregate.error import ERROR_COLUMNS
from cllora.privacy import DP_COLUMNS, clip_columns

ROUNDS_CSV_2_CLASSES = (
    "round", "global_test_loss", "global_test_ppl", "test_loss_c0", "test_loss_c1",
    "fairness_var", "fairness_std", "fairness_min", "fairness_max", "fairness_worst10", "fairness_mean",
    "fairness_var_corrected", "fairness_se_mean", "fairness_jain", "fairness_gini",
    "local_models_test_loss_mean", "local_models_var", "local_models_var_corrected",
    "local_models_global_test_loss_mean", "num_participants", "num_failed", "train_loss_mean",
    "drift_mean", "drift_max", "drift_pairwise", "agg_error", "agg_error_max_layer",
    "dp_epsilon", "dp_noise_std", "dp_clipped_share", "dp_clip_factor_mean", "dp_update_norm_median",
    "secagg_contributors", "secagg_bound",
    "bytes_up", "bytes_down", "bytes_cumulative", "train_seconds", "eval_seconds", "overhead_seconds",
    "round_seconds", "dp_clipped_share_c0", "dp_clip_factor_c0", "dp_clipped_share_c1", "dp_clip_factor_c1",
)
CLIENTS_CSV = (
    "round", "client_id", "rank", "participated", "failed", "num_train_examples", "train_loss", "train_seconds",
    "local_model_test_loss", "local_model_test_se", "local_model_global_test_loss",
    "global_model_local_test_loss", "global_model_local_test_se", "local_test_texts", "error",
)


def test_the_files_headers_keep_their_order():
    assert records.round_columns(2) == ROUNDS_CSV_2_CLASSES
    assert records.client_columns() == records.CLIENT_COLUMNS == CLIENTS_CSV
    assert records.round_columns(0) == records.ROUND_COLUMNS
    assert records.class_columns(3) == ("test_loss_c0", "test_loss_c1", "test_loss_c2")
    assert records.TIMING_COLUMNS == ("train_seconds", "eval_seconds", "overhead_seconds", "round_seconds")


def _names(kind: str) -> tuple[str, ...]:
    return tuple(c.name for c in records.ROUND_TABLE.values() if c.kind == kind and not c.per_class)


def test_the_cores_keys_are_the_tables_columns():
    assert _names("drift") == DRIFT_COLUMNS
    assert _names("aggregation") == ERROR_COLUMNS
    assert _names("privacy") == DP_COLUMNS
    assert records.round_columns(3)[-len(clip_columns(3)):] == clip_columns(3)


class _Update:
    def __init__(self, cid: int):
        self.client_id, self.failed, self.num_train_examples, self.error = cid, False, 10, None
        self.result = type("Result", (), {"train_loss": 3.0, "seconds": 0.5})()


def test_every_key_a_round_is_filled_with_is_declared():
    scores = records.RoundScores(test_loss=3.0, client_losses=np.array([3.0, 3.4]), local={0: (3.1, 2.9)},
                                 local_se={0: 0.1}, client_se=np.array([0.1, 0.2]),
                                 client_texts=np.array([5, 6]), class_losses=[2.8, 3.2])
    row = records.round_row(1, scores, [_Update(0)], 10, 10, 20, 1.0, 0.5, 0.1,
                            dict.fromkeys(DRIFT_COLUMNS, 0.1), dict.fromkeys(ERROR_COLUMNS, 0.2))
    assert set(row) <= set(records.round_columns(2))
    clients = records.client_rows(1, 2, [_Update(0)], scores, [2, 2])
    assert all(set(r) <= set(records.client_columns()) for r in clients)


def test_a_bad_declaration_is_refused():
    with pytest.raises(ValueError, match="kind must be one of .*got 'speed'"):
        records.Column("tokens_per_second", "Tokens per second", "speed")
    with pytest.raises(ValueError, match="report must be one of"):
        records.Column("tokens", "Tokens", "count", report="plot")
    with pytest.raises(ValueError, match="'fairness_var' is already declared"):
        records.register_column(records.Column("fairness_var", "Fairness", "fairness"))


def test_registering_a_column_adds_it_to_the_file_and_the_report(monkeypatch):
    monkeypatch.setattr(records.columns, "ROUND_TABLE", dict(records.ROUND_TABLE))
    monkeypatch.setattr(records.columns, "CLIENT_TABLE", dict(records.CLIENT_TABLE))
    records.register_column(records.Column("tokens_seen", "Tokens seen", "count", report="final"))
    records.register_column(records.Column("tokens", "Tokens", "count"), clients=True)
    assert records.round_columns(1)[-3:] == ("dp_clipped_share_c0", "dp_clip_factor_c0", "tokens_seen")  # last
    assert records.client_columns()[-1] == "tokens"
    assert "tokens_seen" in [c.name for c in records.reported("final")]
    assert "tokens_seen" not in [c.name for c in records.reported("table")]
