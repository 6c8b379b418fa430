"""The accountant on the engine's own path (issue 31): k of N clients sampled without replacement,
replace-one, Gaussian noise z·C on a sum of updates clipped to C, T rounds.

Independent reference: a concrete pair of neighbouring federations the engine can meet. Let every
other client send the clipped update -C·e and the target client send -C·e in one federation and
+C·e in the other. Then one federation's release is always N(-kC, (zC)²) and the other's is
(1-q)·N(-kC, (zC)²) + q·N(-kC + 2C, (zC)²), q = k/N: in units of C, the pair
    P = (1-q)·N(0, z²) + q·N(2, z²)  vs  Q = N(0, z²)
(Zhu, Dong & Wang 2022, Table 1, give this as the dominating pair of sampling without replacement
under replace-one, so its ε is the exact one). dp-accounting's *PLD* accountant (privacy-loss
distributions, not the RDP code the engine's accountant calls) computes that pair's ε exactly, to
its discretisation (1e-4, rounded pessimistically): `exact_epsilon` below.

The engine's RDP accountant must never report less (it would under-state the privacy loss), and its
slack over the exact value is pinned per setting to within SLACK_TOLERANCE (RDP with Wang, Balle &
Kasiviswanathan's Theorem 27 bound: 1.42× at ε = 8 and 1.69× at ε = 2 for 5 rounds at q = 0.1). A
wrong k, N, number of rounds or z moves the accountant's ε outside that band (last test).
"""

from __future__ import annotations

import pytest

from cllora import privacy

SLACK_TOLERANCE = 0.025  # relative: the accountant's ε / the exact ε, against its pinned value
DELTA = 1e-5


def exact_epsilon(z: float, k: int, n: int, rounds: int, delta: float = DELTA) -> float:
    """ε of the engine's mechanism on the pair above, by dp-accounting's PLD accountant."""
    import dp_accounting as dpa
    from dp_accounting.pld import PLDAccountant

    acc = PLDAccountant(dpa.NeighboringRelation.ADD_OR_REMOVE_ONE, value_discretization_interval=1e-4)
    # in units of C: the pair is a q-mixture of N(2, z²) against N(0, z²), i.e. sensitivity 1 at std z/2
    acc.compose(dpa.PoissonSampledDpEvent(k / n, dpa.GaussianDpEvent(z / 2)), rounds)
    return acc.get_epsilon(delta)


# (z, k, N, rounds, the accountant's ε / exact ε): the two published settings (z solved for
# ε = 8 and ε = 2 in 5 rounds at q = 0.1), the preset's 10 rounds, a small federation
CASES = [(1.3183, 2, 20, 5, 1.4225), (2.7865, 2, 20, 5, 1.6862), (1.3183, 20, 200, 5, 1.4225),
         (1.48, 2, 20, 10, 1.4722), (0.5, 2, 6, 3, 1.2222)]


@pytest.mark.parametrize("z, k, n, rounds, slack", CASES)
def test_accountant_is_sound_and_its_slack_over_the_exact_epsilon_is_pinned(z, k, n, rounds, slack):
    exact = exact_epsilon(z, k, n, rounds)
    reported = privacy.epsilon(z, k, n, rounds, DELTA)
    assert reported >= exact  # never under-reports
    assert reported / exact == pytest.approx(slack, rel=SLACK_TOLERANCE)


def test_the_published_settings_give_the_reviewed_epsilons():
    """The review solved z independently with dp-accounting: 1.3183 for ε = 8 and 2.7865 for ε = 2."""
    assert privacy.epsilon(1.3183, 2, 20, 5, DELTA) == pytest.approx(8.0, abs=0.01)
    assert privacy.epsilon(2.7865, 2, 20, 5, DELTA) == pytest.approx(2.0, abs=0.01)
    assert exact_epsilon(1.3183, 2, 20, 5) == pytest.approx(5.62, abs=0.02)  # the tight value


@pytest.mark.parametrize("wrong", [dict(k=3), dict(n=40), dict(rounds=6), dict(z=1.3183 * 1.1),
                                   dict(z=1.3183 * 0.9), dict(rounds=4), dict(k=1)])
def test_a_wrong_k_n_rounds_or_z_falls_outside_the_band(wrong):
    """An accountant fed the wrong k, N, rounds or z is caught against the exact ε of the right one."""
    right = dict(z=1.3183, k=2, n=20, rounds=5)
    exact = exact_epsilon(**right)
    fed = {**right, **wrong}
    reported = privacy.epsilon(fed["z"], fed["k"], fed["n"], fed["rounds"], DELTA)
    ok = reported >= exact and abs(reported / exact / 1.4225 - 1) <= SLACK_TOLERANCE
    assert not ok, (wrong, reported, exact)
