"""The local experiment's per-run number behind "length skew has little effect on local training":
the local models' own-split test loss as a change from round 0, from clients.csv, so that a
difference between the conditions' test splits that exists before any training does not count."""

from __future__ import annotations

from cllora.analysis.stats import finite, mean


def local_change_curve(clients: list[dict]) -> list[tuple[int, float]]:
    """Per trained round: the mean over that round's evaluated local models of (the local model's
    loss on its own split − the round-0 global model's loss on the same split), nats/token, as
    (round, value) pairs. Empty without round-0 split losses or local evaluations (runs before
    clients.csv had them)."""
    base = {c["client_id"]: c["global_model_local_test_loss"] for c in clients
            if c.get("round") == 0 and finite(c.get("global_model_local_test_loss"))}
    per_round: dict[int, list[float]] = {}
    for c in clients:
        if (c.get("round") or 0) >= 1 and finite(c.get("local_model_test_loss")) and c.get("client_id") in base:
            per_round.setdefault(c["round"], []).append(c["local_model_test_loss"] - base[c["client_id"]])
    return [(r, mean(v)) for r, v in sorted(per_round.items())]


def local_change(clients: list[dict]) -> float | None:
    """The mean over trained rounds of `local_change_curve`; None where it is empty."""
    return mean(v for _, v in local_change_curve(clients))
