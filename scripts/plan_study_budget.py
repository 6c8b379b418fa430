"""Write the plans of the study-budget sweeps (results/<sweep>/plan.toml) from the pilot probes, before
any planned cell runs. Usage: python scripts/plan_study_budget.py PILOTS_DIR RESULTS_DIR [SWEEP ...]

Each plan fixes the seeds (0, 1, 2: what fits the <= 3 h a planned sweep may take on 2 CPU cores),
the claims the sweep decides, each claim's family, headline and margin, and a planning sd from which
its minimal detectable effect (noncentral t, 80 % power, two-sided 5 %) is computed. The planning sd
of a claim is the larger of two numbers, each stated in the plan:
  - the pilot's: a probe run (seed 100, never a planned seed, never in a verdict) of the sweep's skewed
    condition shows how much one round's loss moves by training noise. Its mean |second difference|
    f estimates that noise's sd as sigma = f / 1.954 (for independent normal noise e_r, the second
    difference has sd sqrt(6) sigma and mean absolute value sqrt(6) sigma sqrt(2/pi) = 1.954 sigma). A
    paired difference of two final losses then has sd sqrt(2) sigma; of two overfitting values (final
    minus minimum over 11 rounds) 1.5 sigma and of two fluctuation values (means of 8 overlapping
    |second differences|) 1.0 sigma, both simulated on pure-noise curves (`noise_factors`);
  - the published quick-scale sd over seeds of the same effect (results/claims.json), where one exists:
    the study budget trains longer, so its seeds should not agree better than the quick scale's.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import sys
from pathlib import Path

from cllora import curves, records
from cllora.analysis.power import planning_mde

SEEDS = [0, 1, 2]
E_ABS_SECOND_DIFF = math.sqrt(6) * math.sqrt(2 / math.pi)  # E|e1 - 2 e2 + e3| / sigma
# sd of a paired difference per sigma of round noise, by measure (see the module docstring)
PER_SIGMA = {"final": math.sqrt(2), "overfit": 1.5, "fluctuation": 1.0}


def noise_factors(reps: int = 20000, seed: int = 0) -> dict[str, float]:
    """sd of the paired difference of two runs' overfitting and fluctuation, per sigma, for pure-noise
    curves of rounds 0..10 (what PER_SIGMA holds, rounded: 1.51 and 0.98 at seed 0)."""
    import numpy as np

    e = np.random.default_rng(seed).normal(size=(reps, 2, 11))
    overfit = e[:, :, -1] - e.min(axis=2)
    fluct = np.abs(np.diff(e[:, :, 1:], n=2, axis=2)).mean(axis=2)
    return {"overfit": float(np.std(overfit[:, 0] - overfit[:, 1])),
            "fluctuation": float(np.std(fluct[:, 0] - fluct[:, 1]))}


def pilot_sigma(run_dir: Path) -> tuple[float, str]:
    """(sigma, description) of one probe run's round-to-round noise."""
    rows = records.read_csv(run_dir / "rounds.csv")
    curve = [(r["round"], r["global_test_loss"]) for r in rows if r.get("global_test_loss") is not None]
    f = curves.fluctuation(curve)
    over, best = curves.overfit(curve)
    sigma = f / E_ABS_SECOND_DIFF
    return sigma, (f"{run_dir.parent.parent.name}/{run_dir.parent.name}/{run_dir.name}: rounds 0..{curve[-1][0]}, "
                   f"minimum at round {best}, final {over:+.4f} above it, fluctuation {f:.4f} nats "
                   f"(sigma = {sigma:.4f})")


def quick_sd(claims: dict, claim_id_text: str) -> float | None:
    """The largest published per-seed sd among the deciding comparisons of a claim (quick scale)."""
    for claim in claims["claims"]:
        if claim["claim"] == claim_id_text:
            sds = [c.get("seed_sd") for c in claim["comparisons"] if c.get("decides") and c.get("seed_sd")]
            return max(sds) if sds else None
    return None


def shared_blocks(path: Path) -> dict[str, str]:
    """The [[claims]] blocks of a committed plan, by id, as written (a claim decided over two sweeps is
    declared identically in both plans)."""
    if not path.is_file():
        return {}
    blocks = path.read_text().split("[[claims]]\n")[1:]
    return {b.split('id = "', 1)[1].split('"', 1)[0]: "[[claims]]\n" + b for b in blocks}


def claim_entry(cid: str, headline: str, family: str, unit: str, sd: float, how: str, margin: float = 0.0,
                note: str = "") -> str:
    mde = planning_mde(sd, len(SEEDS))
    return "\n".join([
        "[[claims]]", f'id = "{cid}"', f'headline = "{headline}"', f'family = "{family}"', f"margin = {margin}",
        f'unit = "{unit}"', f"planning_sd = {sd:.6g}", f"mde = {mde:.6g}",
        f'note = """planning sd: {how}.{(" " + note) if note else ""}"""', ""])


def plan_text(sweep: str, pilot: str, claims: list[str], note: str) -> str:
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    head = ["[plan]", f'sweep = "{sweep}"', f'written = "{now}"', f"seeds = {SEEDS}", 'design = "fixed"',
            "level = 0.95", f'pilot = """{pilot}"""', "reconstructed = false", f'note = """{note}"""', ""]
    return "\n".join(head) + "\n" + "\n".join(claims)


def main(argv: list[str]) -> int:
    pilots, results = Path(argv[1]), Path(argv[2])
    only = set(argv[3:])
    published = records.read_json(results / "claims.json") or {"claims": []}
    texts = {c["claim"]: c for c in published["claims"]}

    def q(text):  # noqa: ANN001
        return quick_sd(published, text) if text in texts else None

    def sd_of(sigma: float, measure: str, quick: float | None) -> tuple[float, str]:
        pilot = PER_SIGMA[measure] * sigma
        if quick is not None and quick > pilot:
            return quick, f"the quick-scale sd over seeds {quick:.4g} (above the pilot's {pilot:.4g})"
        return pilot, f"the pilot's {PER_SIGMA[measure]:.3g} x sigma = {pilot:.4g}" + (
            f" (the quick-scale sd over seeds is {quick:.4g})" if quick is not None else "")

    plans = {}
    probe = {name: next((pilots / f"{name}").glob("*/*-s100"), None) for name in
             ("study-length-study", "study-quantity-study", "study-local-study", "study-size-study")}
    for sweep, run in probe.items():
        if only and sweep not in only:
            continue
        if run is None or not (run / "summary.json").is_file():
            print(f"{sweep}: its pilot has not finished; no plan written")
            continue
        sigma, pilot = pilot_sigma(run)
        pilot = "one probe run at seed 100 (not a planned seed; in no verdict): " + pilot
        entries = []
        shared = shared_blocks(results / "study-length-study" / "plan.toml") if "quantity" in sweep else {}
        if shared:  # one claim, one declaration: the length plan's, verbatim (cllora.analysis.verdicts.apply_plan)
            entries += [shared["noniid_overfits_more"], shared["alpha01_fluctuates_more"]]
            scheme = "quantity"
            sd, how = sd_of(sigma, "final", q("IID gives the lowest global test loss under quantity skew"))
            entries.append(claim_entry("iid_best_quantity", sweep, "intersection-union", "nats", sd, how))
            sd, how = sd_of(sigma, "final", q("α = 100 is worst under quantity skew"))
            entries.append(claim_entry("alpha100_worst_quantity", sweep, "intersection-union", "nats", sd, how))
        elif sweep in ("study-length-study", "study-quantity-study"):
            scheme = "length" if "length" in sweep else "quantity"
            sd, how = sd_of(sigma, "overfit", None)
            entries.append(claim_entry("noniid_overfits_more", sweep, "intersection-union", "nats", sd, how,
                                       note="Decided with the other global sweep (study-length-study, "
                                            "study-quantity-study): every non-IID condition must overfit more."))
            sd, how = sd_of(sigma, "fluctuation", q("the global test loss fluctuates more at α = 0.1 than under IID"))
            entries.append(claim_entry("alpha01_fluctuates_more", sweep, "intersection-union", "nats", sd, how,
                                       note=f"This sweep's {scheme} skew alpha = 0.1 against IID."))
            if scheme == "length":
                sd, how = sd_of(sigma, "final", q("length skew raises the global test loss"))
                entries.append(claim_entry("length_skew_hurts", sweep, "holm", "nats", sd, how))
            else:
                sd, how = sd_of(sigma, "final", q("IID gives the lowest global test loss under quantity skew"))
                entries.append(claim_entry("iid_best_quantity", sweep, "intersection-union", "nats", sd, how))
                sd, how = sd_of(sigma, "final", q("α = 100 is worst under quantity skew"))
                entries.append(claim_entry("alpha100_worst_quantity", sweep, "intersection-union", "nats", sd, how))
        elif sweep == "study-local-study":
            sd, how = sd_of(sigma, "final", q("length skew has little effect on local training"))
            entries.append(claim_entry("length_little_local_effect", sweep, "holm", "nats", sd, how, margin=0.02,
                                       note="Equivalence: negligible if the 90 % interval of the change from "
                                            "round 0 lies inside (-0.02, +0.02) nats."))
            quick = q("quantity skew hurts fairness more than length skew")
            entries.append(claim_entry("quantity_fairness_worse", sweep, "holm", "nats^2", quick or 0.0157,
                                       "the quick-scale sd over seeds (fairness is not a loss curve: the pilot's "
                                       "round noise does not apply)"))
            quick = q("under skew, the local test losses of the clients start apart and converge")
            entries.append(claim_entry("local_losses_converge", sweep, "intersection-union", "nats",
                                       quick or 0.18, "the quick-scale sd over seeds of the gap closure"))
        else:  # study-size-study: gemma3-270m beside study-length-study's smollm2-135m cells
            sd, how = sd_of(sigma, "final", None)
            rel = 2 * sd / math.sqrt(2) / 3.5  # two models' relative ranges at a loss near 3.5 nats
            entries.append(claim_entry("small_models_length_sensitive", sweep, "holm", "%", rel,
                                       f"{how}, as a relative range at a loss near 3.5 nats and a difference of "
                                       f"two models: 2 x sd / sqrt(2) / 3.5 = {rel:.4g}",
                                       note="smollm2-135m's arm: study-length-study's alpha = 0.1 and IID cells "
                                            "(same settings, same seeds). Size and family are confounded."))
        plans[sweep] = plan_text(sweep, pilot, entries,
                                 "Seeds 0-2: the <= 3 h a planned sweep may take on 2 CPU cores; more seeds "
                                 "later are an extension, never a verdict.")
    for sweep, text in plans.items():
        out = results / sweep / "plan.toml"
        if out.exists():
            print(f"{out} exists: a plan is never rewritten; not touched")
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
