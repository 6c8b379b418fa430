"""FedAvg and the metrics against hand-computed values."""

import math

import pytest
import torch

from cllora.aggregate import aggregate, check_update, fedavg, state_nbytes
from cllora.metrics import fairness, perplexity, token_weighted_loss


def test_fedavg_is_the_example_weighted_mean():
    a = {"w": torch.tensor([1.0, 2.0]), "b": torch.tensor([[0.0]])}
    b = {"w": torch.tensor([4.0, 8.0]), "b": torch.tensor([[3.0]])}
    out = fedavg([a, b], [1, 2])  # weights 1/3, 2/3
    assert torch.allclose(out["w"], torch.tensor([3.0, 6.0]))
    assert torch.allclose(out["b"], torch.tensor([[2.0]]))
    assert out["w"].dtype == torch.float32


def test_fedavg_of_one_state_is_that_state():
    a = {"w": torch.randn(3, 4)}
    assert torch.equal(fedavg([a], [7])["w"], a["w"])


def test_aggregate_registry_and_errors():
    a = {"w": torch.ones(2)}
    assert torch.equal(aggregate("fedavg", [a, a], [1, 1])["w"], a["w"])
    with pytest.raises(ValueError, match="strategy must be one of fedavg"):
        aggregate("fedmagic", [a], [1])
    with pytest.raises(ValueError, match="at least one client state"):
        fedavg([], [])
    with pytest.raises(ValueError, match="positive sum"):
        fedavg([a], [0])
    with pytest.raises(ValueError, match="different tensor names"):
        fedavg([a, {"v": torch.ones(2)}], [1, 1])


def test_payload_checks_name_what_is_wrong_and_bytes_are_counted():
    ref = {"w": torch.ones(3), "v": torch.ones(2, 2)}
    assert check_update({"w": torch.zeros(3), "v": torch.zeros(2, 2)}, ref) is None
    assert check_update(None, ref) == "no adapter in the reply"
    assert "extra: x" in check_update({"w": torch.ones(3), "v": torch.ones(2, 2), "x": torch.ones(1)}, ref)
    assert "missing: v" in check_update({"w": torch.ones(3)}, ref)
    assert "shape (2, 3)" in check_update({"w": torch.ones(3), "v": torch.ones(2, 3)}, ref)
    assert "dtype torch.float64" in check_update({"w": torch.ones(3, dtype=torch.float64),
                                                  "v": torch.ones(2, 2)}, ref)
    assert "NaN or Inf" in check_update({"w": torch.tensor([1.0, float("nan"), 0.0]), "v": torch.ones(2, 2)}, ref)
    assert "NaN or Inf" in check_update({"w": torch.ones(3), "v": torch.full((2, 2), float("inf"))}, ref)
    assert "not a tensor" in check_update({"w": [1.0, 2.0, 3.0], "v": torch.ones(2, 2)}, ref)
    assert state_nbytes({"a": torch.ones(2, 3), "b": torch.ones(4)}) == 40


def test_token_weighted_loss_weights_by_tokens_not_batches():
    # batch 1: 2 tokens with loss sum 2 (mean 1); batch 2: 6 tokens with loss sum 18 (mean 3)
    assert token_weighted_loss([2.0, 18.0], [2, 6]) == pytest.approx(20 / 8)
    with pytest.raises(ValueError, match="at least one predicted token"):
        token_weighted_loss([1.0], [0])
    assert perplexity(0.0) == 1.0 and perplexity(math.log(20)) == pytest.approx(20)
    assert perplexity(1e4) == math.inf


def test_fairness_statistics():
    f = fairness([1.0, 2.0, 3.0, 4.0, float("nan")])
    assert f["mean"] == 2.5 and f["var"] == pytest.approx(1.25) and f["std"] == pytest.approx(1.25 ** 0.5)
    assert (f["min"], f["max"], f["worst10"]) == (1.0, 4.0, 4.0)
    worst = fairness(list(range(20)))["worst10"]
    assert worst == pytest.approx(18.5)  # mean of the 2 highest of 20
    assert math.isnan(fairness([])["var"])
