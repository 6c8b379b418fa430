"""The report's fairness numbers (cllora.analysis.fairness, cllora.analysis.local) on hand-built
run files: recomputed from split_losses.npz with the current estimator, legacy values labelled with
their bias, the clients a fairness covers, and the local models' change from round 0."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cllora.analysis.fairness import CURRENT, LEGACY, fairness_fields, legacy_bias, split_fairness
from cllora.analysis.local import local_change
from cllora.metrics import SE_ESTIMATOR

# two clients: texts (loss, tokens) (1, 1), (3, 1) and (5, 4), (5, 2): losses 2 and 5, SE² 1 and 0
SPLIT = {"owner_r3": np.array([0, 0, 1, 1]), "tokens_r3": np.array([1, 1, 4, 2]),
         "loss_r3": np.array([1.0, 3.0, 5.0, 5.0])}
ROUNDS = [{"round": 0, "fairness_var_corrected": 0.9}, {"round": 3, "fairness_var_corrected": 0.7}]
CLIENTS = [{"round": 3, "client_id": k, "global_model_local_test_loss": loss, "global_model_local_test_se": se,
            "local_test_texts": 2} for k, (loss, se) in enumerate(((2.0, 1.0), (5.0, 0.0)))]


def test_fairness_is_recomputed_from_split_losses():
    # var_pop(2, 5) = 2.25 minus 1/2 * mean(1, 0) = 2.0, whatever rounds.csv says (0.7)
    assert split_fairness(SPLIT, 2) == {3: pytest.approx(2.0)}
    out = fairness_fields({"clients": 2}, {}, ROUNDS, CLIENTS, SPLIT)
    assert out["final_fairness_var_corrected"] == pytest.approx(2.0) and out["fairness_estimator"] == CURRENT
    assert out["fairness_legacy_bias"] is None and out["fairness_clients"] == 2


def test_legacy_values_are_labelled_with_their_bias():
    # no split_losses.npz, no se_estimator in config.json: rounds.csv's value stands, labelled;
    # its bias: (N-1)/N * mean SE² u/(1-u), u = 0.68/2 for 2 texts: 1/2 * (1 * 0.34/0.66 + 0) / 2
    out = fairness_fields({"clients": 2}, {}, ROUNDS, CLIENTS, None)
    assert "final_fairness_var_corrected" not in out and out["fairness_estimator"] == LEGACY
    assert out["fairness_legacy_bias"] == pytest.approx(0.5 * (0.34 / 0.66) / 2)
    # a run of this version: its rounds.csv already uses the current formula
    current = fairness_fields({"clients": 2}, {"se_estimator": SE_ESTIMATOR}, ROUNDS, CLIENTS, None)
    assert current["fairness_estimator"] == CURRENT and current["fairness_legacy_bias"] is None
    assert legacy_bias([0.2, None, 0.1], [3, 4, 1]) == pytest.approx(0.5 * (0.04 * (0.68 / 3) / (1 - 0.68 / 3) + 0) / 2)
    assert math.isnan(legacy_bias([None], [2]))


def test_fairness_clients_counts_the_scored_ones():
    # FedSA-LoRA: clients without a personal model have no loss (NaN) in the fairness round
    clients = CLIENTS + [{"round": 3, "client_id": 2, "global_model_local_test_loss": float("nan")}]
    assert fairness_fields({"clients": 3}, {}, ROUNDS, clients, None)["fairness_clients"] == 2


def test_local_change_from_round_0_by_hand():
    # splits scored 3.0 and 2.0 before training; round 1: local models 2.5 and 1.0; round 2: only
    # client 0, 2.0: changes (-0.5, -1.0) then (-1.0): mean over rounds of the round means = -0.875
    clients = [{"round": 0, "client_id": 0, "global_model_local_test_loss": 3.0},
               {"round": 0, "client_id": 1, "global_model_local_test_loss": 2.0},
               {"round": 1, "client_id": 0, "local_model_test_loss": 2.5},
               {"round": 1, "client_id": 1, "local_model_test_loss": 1.0},
               {"round": 2, "client_id": 0, "local_model_test_loss": 2.0},
               {"round": 2, "client_id": 1, "local_model_test_loss": None}]
    assert local_change(clients) == pytest.approx(-0.875)
    assert local_change(clients[2:]) is None  # no round-0 split losses
