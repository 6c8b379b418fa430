"""The report's client-level DP part on hand-built run directories (no training, no model): the final
ε read from the last round, utility against ε with its t-interval, the loss per length class with
DP minus without (paired by seed, against runs without DP or else the clipping-only ones), the
clipping table by dominant length class, the figure's drawn numbers, and the page's DP section,
present with DP and absent without."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cllora import records
from cllora.analysis import load_runs, privacy
from cllora.report import write_report
from cllora.report.axes import plt
from cllora.report.figures import privacy_figure

T1 = 12.706204736174694  # t_{0.975} with 1 degree of freedom: two seeds
INF = math.inf


def dp_config(scheme, seed, epsilon):
    """A run's config: `epsilon` None = no DP, inf = clipping only, else a target ε."""
    dp = {"dp_clip": None, "dp_noise": None, "dp_target_epsilon": None, "dp_delta": None} if epsilon is None \
        else {"dp_clip": 0.5, "dp_noise": None, "dp_target_epsilon": epsilon, "dp_delta": 1e-5}
    return {"model": "m", "dataset": "sotu", "scheme": scheme, "alpha": 0.1 if scheme == "length" else 1.0,
            "seed": seed, "rounds": 2, "clients": 20, "clients_per_round": 2, "rank": 2, "lora_alpha": 4.0,
            "targets": ["q_proj", "v_proj"], "num_classes": 2, **dp}


def write_dp_run(path, scheme, seed, epsilon, final, classes, eps_rounds=(None, None), clip=None,
                 done=True):
    """A run directory as the engine writes it, 2 rounds: global loss 3.0 → final, class losses
    3.0 → `classes` (final per class), dp_epsilon per round 1, 2 from `eps_rounds`, and per round 1, 2
    the clip columns of `clip` ({column: (round 1, round 2)})."""
    path.mkdir(parents=True)
    records.write_json(path / "config.json", {"config": dp_config(scheme, seed, epsilon), "precision": "fp32"})
    rows = []
    for r in range(3):
        row = {"round": r, "global_test_loss": (3.0, (3.0 + final) / 2, final)[r], "round_seconds": 1.0,
               **{f"test_loss_c{c}": (3.0, (3.0 + v) / 2, v)[r] for c, v in enumerate(classes)}}
        if r and epsilon is not None:
            row.update({"dp_epsilon": eps_rounds[r - 1], "dp_noise_std": 0.0 if epsilon == INF else 0.37,
                        **{k: v[r - 1] for k, v in (clip or {}).items()}})
        rows.append(row)
    records.write_csv(path / "rounds.csv", records.round_columns(2), rows)
    records.write_json(path / "summary.json", {"rounds_completed": 2 if done else 1})
    records.write_json(path / "partition.json", {
        "scheme": scheme, "alpha": 0.1, "num_clients": 2, "class_edges": [40.0],
        "clients": [{"class_counts": [3, 1]}, {"class_counts": [1, 3]}]})


# length skew α = 0.1, two seeds: no DP, clipping only (ε = ∞) and ε ≈ 8 (7.9 after round 2);
# IID, two seeds: clipping only and ε ≈ 8 (no run without DP), and a third ε ≈ 8 seed that stopped early
CLIP_SEED0 = {"dp_clipped_share": (0.5, 0.5), "dp_clip_factor_mean": (0.75, 0.9),
              "dp_clipped_share_c0": (0.0, 0.5), "dp_clip_factor_c0": (1.0, 0.8),
              "dp_clipped_share_c1": (1.0, None), "dp_clip_factor_c1": (0.5, None)}
CLIP_SEED1 = {"dp_clipped_share": (0.5, 1.0), "dp_clip_factor_mean": (0.7, 0.5),
              "dp_clipped_share_c0": (0.0, None), "dp_clip_factor_c0": (1.0, None),
              "dp_clipped_share_c1": (1.0, 1.0), "dp_clip_factor_c1": (0.4, 0.6)}


def write_dp_study(root):
    for seed in (0, 1):
        up = 0.2 * seed
        write_dp_run(root / f"len-nodp-s{seed}", "length", seed, None, 2.0 + up, [2.0 + up, 1.0 + up])
        write_dp_run(root / f"len-inf-s{seed}", "length", seed, INF, 2.1 + up, [2.1 + up, 1.1 + up], (INF, INF))
        write_dp_run(root / f"len-e8-s{seed}", "length", seed, 8.0, 2.5 + up, [2.1 + up, 1.5 + 2 * up],
                     (5.0, 7.9), clip=(CLIP_SEED0, CLIP_SEED1)[seed])
        write_dp_run(root / f"iid-inf-s{seed}", "iid", seed, INF, 2.0 + up, [2.0, 1.0], (INF, INF))
        write_dp_run(root / f"iid-e8-s{seed}", "iid", seed, 8.0, 2.3 + up, [2.4, 1.0 + up], (5.0, 7.9))
    write_dp_run(root / "iid-e8-s2", "iid", 2, 8.0, 9.0, [9.0, 9.0], (5.0, None), done=False)


@pytest.fixture
def dp_runs(tmp_path):
    write_dp_study(tmp_path)
    return load_runs(tmp_path, log=lambda m: None)


def test_final_epsilon_is_the_last_recorded_round():
    rows = [{"round": 0, "dp_epsilon": None}, {"round": 1, "dp_epsilon": 5.0}, {"round": 2, "dp_epsilon": 7.9},
            {"round": 3}]
    assert privacy.final_epsilon(rows) == 7.9
    assert privacy.final_epsilon([{"round": 1, "dp_epsilon": INF}]) == INF  # clipping only: ε = ∞
    assert privacy.final_epsilon([{"round": 0, "dp_epsilon": None}]) is None
    assert [privacy.fmt_epsilon(e) for e in (INF, 7.9, None)] == ["∞", "7.9", "—"]


def test_which_runs_used_dp(dp_runs):
    assert privacy.any_dp(dp_runs) and not privacy.any_dp([r for r in dp_runs if "nodp" in r.name])
    table = {r["name"]: r for r in privacy.run_table(dp_runs)}
    assert "len-nodp-s0" not in table and len(table) == 9
    assert table["len-e8-s1"]["epsilon"] == 7.9 and table["iid-inf-s0"]["epsilon"] == INF
    assert table["iid-e8-s2"]["epsilon"] == 5.0 and not table["iid-e8-s2"]["complete"]
    # z = noise std on the mean × clients per round / C = 0.37 · 2 / 0.5
    assert table["len-e8-s0"]["noise_multiplier"] == pytest.approx(1.48) and table["len-e8-s0"]["delta"] == 1e-5


def test_utility_against_epsilon(dp_runs):
    (entry,) = privacy.utility(dp_runs)  # one setting once the DP keys are left out
    assert entry["label"] == "m"
    length, iid = entry["lines"]
    assert (length["label"], iid["label"]) == ("length skew, α = 0.1", "IID")
    assert [p["epsilon"] for p in length["points"]] == [7.9, INF]  # sorted by ε, ∞ last
    assert [p["mean"] for p in length["points"]] == pytest.approx([2.6, 2.2])
    half = T1 * 0.2 / math.sqrt(2) / math.sqrt(2)  # two seeds 0.2 apart: sd 0.2/√2
    e8 = length["points"][0]
    assert (e8["low"], e8["high"]) == pytest.approx((2.6 - half, 2.6 + half)) and e8["seeds"] == [0, 1]
    assert length["no_dp"]["mean"] == pytest.approx(2.1) and length["no_dp"]["epsilon"] is None
    # IID: no run without DP; the seed that stopped early (final loss 9.0) is left out
    assert iid["no_dp"] is None and [p["mean"] for p in iid["points"]] == pytest.approx([2.4, 2.1])
    assert iid["points"][0]["seeds"] == [0, 1]


def test_class_gaps_paired_by_seed(dp_runs):
    gaps = {(g["condition"], g["epsilon"]): g for g in privacy.class_gaps(dp_runs)}
    assert set(gaps) == {("length skew, α = 0.1", INF), ("length skew, α = 0.1", 7.9), ("IID", 7.9)}
    e8 = gaps[("length skew, α = 0.1", 7.9)]
    assert e8["baseline"] == privacy.NO_DP
    # seed 0: [2.1, 1.5] − [2.0, 1.0]; seed 1: [2.3, 1.9] − [2.2, 1.2] → class 0 +0.1, +0.1; class 1 +0.5, +0.7
    assert e8["classes"][0]["mean"] == pytest.approx(0.1) and e8["classes"][0]["low"] == pytest.approx(0.1)
    assert e8["classes"][1]["mean"] == pytest.approx(0.6)
    assert e8["classes"][1]["high"] == pytest.approx(0.6 + T1 * 0.1)  # sd 0.2/√2, over √2
    assert e8["classes"][1]["n"] == 2 and e8["classes"][1]["round"] == 2
    assert gaps[("length skew, α = 0.1", INF)]["classes"][1]["mean"] == pytest.approx(0.1)  # clipping only vs no DP
    # IID has no run without DP: against the clipping-only runs; class 1 +0.0 and +0.2
    iid = gaps[("IID", 7.9)]
    assert iid["baseline"] == "ε = ∞ (clipping only)" and iid["classes"][0]["mean"] == pytest.approx(0.4)
    assert iid["classes"][1]["mean"] == pytest.approx(0.1) and iid["classes"][1]["n"] == 2


def test_clipping_by_dominant_length_class(dp_runs):
    rows = [r for r in privacy.clip_table(dp_runs) if r["condition"] == "length skew, α = 0.1" and r["epsilon"] == 7.9]
    by_class = {r["class"]: r for r in rows}
    assert list(by_class) == ["all", 0, 1]
    # per seed the mean over the rounds that had such a client, then the mean over seeds:
    # class 0 share (0.0 + 0.5)/2 = 0.25 and 0.0 → 0.125; factor (1.0 + 0.8)/2 = 0.9 and 1.0 → 0.95
    # (pooled over rounds it would be 0.933); class 1 share 1.0, factor 0.5 and 0.5
    assert by_class[0]["clipped_share"] == pytest.approx(0.125) and by_class[0]["clip_factor"] == pytest.approx(0.95)
    assert by_class[1]["clipped_share"] == pytest.approx(1.0) and by_class[1]["clip_factor"] == pytest.approx(0.5)
    assert by_class[0]["rounds"] == 3 and by_class[1]["rounds"] == 3 and by_class[0]["seeds"] == 2
    assert by_class["all"]["clipped_share"] == pytest.approx((0.5 + 0.75) / 2)
    assert by_class["all"]["clip_factor"] == pytest.approx((0.825 + 0.6) / 2)
    # runs whose rounds recorded no clip statistics add no row; runs without DP never do
    assert all(r["epsilon"] == 7.9 and r["condition"] == "length skew, α = 0.1" for r in privacy.clip_table(dp_runs))


def test_privacy_figure_draws_the_numbers(dp_runs):
    (entry,) = privacy.utility(dp_runs)
    gaps = [g for g in privacy.class_gaps(dp_runs) if g["condition"] == "length skew, α = 0.1" and g["epsilon"] == 7.9]
    fig = privacy_figure(entry["lines"], gaps, ["0: ≤ 40", "1: > 40"], "t")
    left, right = fig.axes
    lines = left.get_lines()
    assert np.allclose(lines[0].get_xdata(), [7.9, 4 * 7.9])  # ∞ drawn right of the largest finite ε
    assert np.allclose(lines[0].get_ydata(), [2.6, 2.2]) and np.allclose(lines[1].get_ydata(), 2.1)  # no DP
    assert [t.get_text() for t in left.get_xticklabels()] == ["7.9", "∞"]
    assert np.allclose(right.get_lines()[0].get_ydata(), [0.1, 0.6])
    assert [t.get_text() for t in right.get_xticklabels()] == ["0: ≤ 40", "1: > 40"]
    plt.close(fig)


def test_report_has_a_dp_section_with_dp(tmp_path):
    write_dp_study(tmp_path)
    page = write_report(tmp_path, log=lambda m: None).read_text()
    assert 'id="privacy"' in page and 'id="fig-privacy_m"' in page
    assert (tmp_path / "figures" / "privacy_m.png").is_file() and (tmp_path / "figures" / "privacy_m.svg").is_file()
    start = page.index('id="privacy"')
    section = page[start:page.index("<h2", start)]
    clip = section[section.index("Clipping by the client"):section.index("DP runs")]
    assert '<td>0</td><td class="num">2</td><td class="num">3</td><td class="num">0.125</td>' \
           '<td class="num">0.950</td>' in clip
    assert "<code>len-e8-s1</code>" in section and "<code>len-nodp-s0</code>" not in section
    assert '<td class="num">7.9</td>' in section and '<td class="num">∞</td>' in section
    assert "+0.6000 [" in section  # class 1's cost of ε = 7.9 against no DP


def test_no_dp_section_without_dp(tmp_path):
    for seed in (0, 1):
        write_dp_run(tmp_path / f"len-s{seed}", "length", seed, None, 2.0, [2.0, 1.0])
        write_dp_run(tmp_path / f"iid-s{seed}", "iid", seed, None, 2.0, [2.0, 1.0])
    page = write_report(tmp_path, log=lambda m: None).read_text()
    assert 'id="privacy"' not in page and "differential privacy" not in page
    assert not list((tmp_path / "figures").glob("privacy_*"))
    assert privacy.utility(load_runs(tmp_path, log=lambda m: None)) == []


def test_dp_runs_show_whether_their_noise_was_secure(tmp_path):
    """A run whose config.json lacks dp_noise_source (every published DP run) is shown as seeded;
    one that records "os" as secure; the section counts the seeded ones."""
    write_dp_study(tmp_path)
    secure = tmp_path / "len-e8-s1" / "config.json"
    recorded = json.loads(secure.read_text())
    secure.write_text(json.dumps({**recorded, "dp_noise_source": "os"}))
    table = {r["name"]: r["noise_source"] for r in privacy.run_table(load_runs(tmp_path, log=lambda m: None))}
    assert table["len-e8-s1"] == "os" and table["len-e8-s0"] == "seeded" and "len-nodp-s0" not in table
    page = write_report(tmp_path, log=lambda m: None).read_text()
    section = page[page.index('id="privacy"'):]
    seeded = sum(v == "seeded" for v in table.values())
    assert f"{seeded} of {len(table)} DP runs drew seeded noise" in section
    row = section[section.index("<code>len-e8-s1</code>"):]
    assert row[:row.index("</tr>")].endswith("<td>secure (OS randomness)</td>")
    row = section[section.index("<code>len-e8-s0</code>"):]
    assert row[:row.index("</tr>")].endswith("<td>seeded: simulation, no guarantee</td>")
