"""The report in a real headless browser (Debian `chromium`; skipped when it is not on PATH):
it loads from disk with the network off, every image renders, and the console stays clean; and,
at 1400 px as a reader opens it, the published report and a sweep's report read at a glance:
nothing overflows horizontally, the claims section up to the end of its table (evidence folded)
fits in about two screens, no evidence line runs past about 300 characters, and the page names
no folder of the machine that wrote it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

from pathlib import Path

import numpy as np
import pytest

from cllora import records
from cllora.report import write_report

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian chromium on PATH")

# Appended to a copy of the report (the report itself has no scripts): after load, write each
# image's natural size and any script error into an attribute that --dump-dom shows.
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e.type)), true);
window.addEventListener('load', () => {
  const imgs = Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight]);
  const h2 = document.getElementById('claims');
  let table = h2;
  while (table && table.tagName !== 'TABLE') { table = table.nextElementSibling; }
  const claims = h2 && table ? table.getBoundingClientRect().bottom - h2.getBoundingClientRect().top : -1;
  const lines = Array.from(document.querySelectorAll('table.evidence tr, ul.evidence li'))
    .map(e => e.textContent.length)
    .concat(table ? Array.from(table.tBodies[0].rows).map(r => r.innerText.length) : []);
  document.body.setAttribute('data-probe', JSON.stringify({imgs: imgs, errors: window.__errors,
    width: document.documentElement.scrollWidth, viewport: window.innerWidth, claims: claims,
    longest: Math.max(0, ...lines), details: document.querySelectorAll('#claims ~ table details').length,
    title: document.title}));
});
</script>"""


WIDTH, SCREEN = 1400, 900  # px: a reader's window; "two screens" of claims is 2 * SCREEN
LONGEST = 320  # characters: "about 300" for an evidence line (today's page had lines of 686)
PUBLISHED = Path(__file__).resolve().parents[1] / "docs" / "findings-report.html"


def fake_run(path, scheme, alpha, seed, num_rounds=4, clients=5, extra=None):
    """A run directory written by hand: the files the report reads, with plausible numbers
    (`extra`: more settings, e.g. another strategy)."""
    rng = np.random.default_rng([seed, int(10 * (alpha or 0))])
    config = {"model": "facebook/opt-125m", "dataset": "sotu", "scheme": scheme, "alpha": alpha or 1.0,
              "seed": seed, "rounds": num_rounds, "clients": clients, "clients_per_round": clients,
              "rank": 2, "lora_alpha": 4.0, "targets": ["q_proj", "v_proj"], "local_epochs": 1,
              "max_length": 128, "max_train_examples": 100, "max_test_examples": 20, "batch_size": 8,
              "lr": 1e-3, "num_classes": 5, "length_measure": "tokens", "precision": "auto", **(extra or {})}
    path.mkdir(parents=True)
    records.write_json(path / "config.json", {"config": config, "precision": "bf16", "device": "cpu",
                                              "adapter_bytes": 24576, "trainable_params": 73_728,
                                              "total_params": 125_313_024})
    rounds, clients_rows = [], []
    for r in range(num_rounds + 1):
        own = 3.0 - 0.1 * r + 0.05 * rng.standard_normal(clients)
        rounds.append({"round": r, "global_test_loss": 3.0 - 0.08 * r + 0.01 * rng.standard_normal(),
                       "fairness_var": float(np.var(own)), "bytes_cumulative": 2 * clients * 24576 * r,
                       "fairness_var_corrected": float(np.var(own)) / 2, "fairness_jain": 0.99,
                       "local_models_test_loss_mean": float(own.mean()) if r else None,
                       "local_models_var": float(own.var()) if r else None, "round_seconds": 1.0,
                       **{f"test_loss_c{c}": 3.2 - 0.1 * c - 0.07 * r + 0.01 * rng.standard_normal()
                          for c in range(5)}})
        for cid in range(clients):
            clients_rows.append({"round": r, "client_id": cid, "participated": int(r > 0),
                                 "local_model_test_loss": float(own[cid]) if r else None,
                                 "global_model_local_test_loss": float(own[cid] + 0.02)})
    records.write_csv(path / "rounds.csv", list(rounds[0]), rounds)
    texts = np.random.default_rng(seed)  # the same test texts for every condition of a seed
    true, tokens = texts.uniform(2.0, 3.5, 50), texts.integers(8, 128, 50)
    np.savez(path / "test_losses.npz", text_index=np.arange(50), tokens=tokens, length_class=np.arange(50) % 5,
             loss_r0=true + 1, loss_final=true + 0.05 * rng.standard_normal(50), loss_best=true,
             final_round=num_rounds, best_round=num_rounds)
    records.write_csv(path / "clients.csv", records.CLIENT_COLUMNS, clients_rows)
    sizes = rng.integers(5, 40, clients) if scheme == "quantity" else np.full(clients, 20)
    records.write_json(path / "partition.json", {
        "scheme": scheme, "alpha": alpha, "num_clients": clients, "num_classes": 5,
        "class_edges": [20.0, 40.0, 60.0, 90.0],
        "clients": [{"client_id": i, "size": int(s), "indices": [],
                     "class_counts": np.bincount(rng.integers(0, 5, int(s)), minlength=5).tolist()}
                    for i, s in enumerate(sizes)]})
    records.write_json(path / "summary.json", records.summarize(rounds, {}))


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser") / "res-7f3a"  # a folder name the page must not show
    for seed in (0, 1):
        for scheme, alpha in (("quantity", 0.1), ("quantity", 100.0), ("length", 0.1), ("iid", None)):
            name = f"opt-125m/{scheme}" + (f"-a{alpha:g}" if alpha else "") + f"-s{seed}"
            fake_run(root / name, scheme, alpha, seed)
    records.write_json(root / "index.json", {"sweep": {"name": "browser-sweep"}, "cells": []})
    return write_report(root, log=lambda m: None)


def load_in_chromium(html_path, tmp_path):
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-extensions",
         "--host-resolver-rules=MAP * ~NOTFOUND",  # any network fetch fails (and would log an error)
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
         f"--window-size={WIDTH},{SCREEN}", "--hide-scrollbars",
         "--virtual-time-budget=5000", "--dump-dom", html_path.resolve().as_uri()],
        capture_output=True, text=True, timeout=120)
    match = re.search(r"data-probe=\"([^\"]*)\"", proc.stdout)
    assert match, f"no probe result; chromium said: {proc.stderr[-2000:]}"
    probe = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    console = [line for line in proc.stderr.splitlines()
               if "CONSOLE" in line or "Uncaught" in line or "Failed to load resource" in line]
    return probe, console


def probed_copy(src, dst, transform=lambda text: text):
    dst.write_text(transform(src.read_text()).replace("</body>", PROBE + "</body>"))
    return dst


def test_report_renders_in_chromium(page, tmp_path):
    figures = sorted((page.parent / "figures").glob("*.png"))
    probe, console = load_in_chromium(probed_copy(page, page.parent / "probe.html"), tmp_path)
    assert len(probe["imgs"]) == len(figures) >= 10
    assert any(f.name.startswith("class_loss_") for f in figures)
    assert all(ok and width > 100 and height > 100 for ok, width, height in probe["imgs"]), probe["imgs"]
    assert probe["errors"] == [] and console == [], console


def test_a_broken_image_would_be_caught(page, tmp_path):
    def break_first_image(text):
        return re.sub(r'src="data:image/png;base64,[^"]{40}', 'src="data:image/png;base64,AAAA', text, count=1)

    probe, _ = load_in_chromium(probed_copy(page, page.parent / "broken.html", break_first_image), tmp_path)
    assert [w for _, w, _ in probe["imgs"]].count(0) == 1


def check_reads_at_a_glance(probe: dict, page: str, folder: Path) -> None:
    """The five points a reader needs, as the browser laid the page out at WIDTH px."""
    assert all(ok and width > 0 for ok, width, _ in probe["imgs"]), "an image did not load"
    assert probe["width"] <= probe["viewport"] == WIDTH, f"{probe['width']} px wide in a {WIDTH} px window"
    assert 0 < probe["claims"] <= 2 * SCREEN, f"claims take {probe['claims']:.0f} px, over two screens"
    assert probe["longest"] <= LONGEST, f"an evidence line of {probe['longest']} characters"
    assert probe["details"] > 0  # the evidence is folded
    text = re.sub(r"data:image/png;base64,[^\"]*", "", page)  # the embedded figures' bytes aside
    assert folder.name not in probe["title"] and str(folder) not in text and "/tmp/" not in text


def test_a_sweeps_report_reads_at_a_glance(page, tmp_path):
    probe, _ = load_in_chromium(probed_copy(page, page.parent / "glance.html"), tmp_path)
    check_reads_at_a_glance(probe, page.read_text(), page.parent)
    assert probe["title"] == "cllora report: browser-sweep"


@pytest.mark.skipif(not PUBLISHED.is_file(), reason="no published report in this checkout")
def test_the_published_report_reads_at_a_glance(tmp_path):
    probe, _ = load_in_chromium(probed_copy(PUBLISHED, tmp_path / "published.html"), tmp_path)
    text = PUBLISHED.read_text()
    check_reads_at_a_glance(probe, text, Path("/tmp/res"))
    assert 'id="fig-claims_forest"' in text  # the claims at a glance
    assert "max_train_examples=400" not in text  # settings are named, not dumped
    assert probe["details"] >= 10
