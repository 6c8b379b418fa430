"""Issue 32's second bad-input battery, by class: output locations (one checked writer), config files
(one reader), settings only the data or the accountant can judge, edited run directories on resume,
and damaged records read by the report. Each case: exit 2 and one sentence, no traceback, and the
files on disk byte for byte as before (or not created)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cllora.cli import main


def tiny_args(model: str, out, *extra: str) -> list[str]:
    return ["run", "--model", model, "--max-train-examples", "120", "--max-test-examples", "12",
            "--clients", "4", "--clients-per-round", "2", "--rounds", "1", "--max-length", "64",
            "--rank", "2", "--precision", "fp32", "--device", "cpu", "--quiet", "--out", str(out), *extra]


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root` (relative path → bytes); {} where root does not exist."""
    root = Path(root)
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def refused(capsys, argv: list[str], message: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert "Traceback" not in err
    return err


def cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    """The real command in a subprocess (what a user sees: exit code and stderr)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    return subprocess.run([sys.executable, "-m", "cllora.cli", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def unwritable_folder(tmp_path: Path) -> Path:
    """A folder this process cannot create files in: a read-only one for a normal user; for root,
    who ignores permission bits, /sys where the kernel refuses (else the test skips)."""
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        return ro
    try:
        (Path("/sys") / ".cllora-probe").touch()
    except OSError:
        return Path("/sys")
    pytest.skip("no folder here refuses root's writes")


# ---------------------------------------------------------------- 1. output locations


def test_output_locations_that_cannot_be_written_are_one_sentence_before_any_work(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    ro = unwritable_folder(tmp_path)
    before = snapshot(tmp_path)
    cases = [
        (["run", "--out", str(tmp_path / "afile"), "--quiet"], "is a file, not a folder"),
        (["run", "--out", str(tmp_path / "afile" / "sub"), "--quiet"], "which is a file, not a folder"),
        (["run", "--out", str(ro / "run"), "--quiet"], "cannot be written"),
        (["sweep", "--preset", "study-length", "--quick", "--out", str(tmp_path / "afile" / "s"),
          "--dry-run"], "which is a file, not a folder"),
        (["sweep", "--preset", "study-length", "--quick", "--out", str(ro / "s"), "--dry-run"],
         "cannot be written"),
        (["partition", "--dirichlet-demo", "--plot", str(tmp_path / "out.xyz")], "has format 'xyz'"),
        (["partition", "--dirichlet-demo", "--plot", str(tmp_path / "out")], "has no format suffix"),
        (["partition", "--dirichlet-demo", "--plot", str(tmp_path / "afile" / "p.png")],
         "which is a file, not a folder"),
        (["partition", "--dirichlet-demo", "--plot", str(ro / "p.png")], "cannot be written"),
        (["partition", "--json", str(tmp_path), "--max-train-examples", "50"], "is a folder; name a file"),
        (["partition", "--json", str(ro / "p.json"), "--max-train-examples", "50"], "cannot be written"),
    ]
    for argv, message in cases:
        refused(capsys, argv, message)
    assert snapshot(tmp_path) == before


def test_sweep_into_a_run_and_run_into_a_sweep_are_refused(tiny_model, tmp_path, capsys):
    run_dir = tmp_path / "run"
    (run_dir).mkdir()
    (run_dir / "config.json").write_text("{}")
    refused(capsys, ["sweep", "--preset", "study-length", "--quick", "--out", str(run_dir), "--dry-run"],
            "holds a run (config.json); a sweep needs its own folder")
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    (sweep_dir / "index.json").write_text("{}")
    before = snapshot(tmp_path)
    refused(capsys, tiny_args(tiny_model, sweep_dir), "holds a sweep (index.json)")
    assert snapshot(tmp_path) == before


def test_report_and_flower_app_check_their_folders(tmp_path, capsys):
    pytest.importorskip("flwr")
    (tmp_path / "afile").write_text("x")
    refused(capsys, ["flower-app", str(tmp_path / "afile" / "app")], "DIR")
    refused(capsys, ["flower-app", str(tmp_path / "app"), "--out", str(tmp_path / "afile")],
            "is a file, not a folder")
    assert not (tmp_path / "app").exists()
    refused(capsys, ["report", str(tmp_path / "afile")], "is not a directory")


def test_an_os_error_the_checks_could_not_foresee_is_one_sentence(tmp_path, capsys, monkeypatch):
    """The CLI's last line of defence: an OSError naming a file (a full disk, say) is exit 2."""
    import cllora.commands.info as info

    def full_disk(args):
        raise OSError(28, "No space left on device", str(tmp_path / "x"))

    monkeypatch.setattr(info, "run", full_disk)
    refused(capsys, ["info"], f"{tmp_path / 'x'}: No space left on device")


# ---------------------------------------------------------------- 2. config files


@pytest.mark.parametrize("content, message, sweep_message", [
    (b"\xef\xbb\xbf[run]\nrounds = 1\n", "starts with a byte-order mark (BOM)", None),
    (b"[run]\nrounds = 1 # caf\xe9\n", "is not UTF-8: byte 22 (line 2) is 0xe9", None),
    (b'scheme = "length"\n[run]\nrounds = 1\n', "settings both at the top level (scheme) and in a [run] table",
     "unknown table or key 'scheme'"),  # a sweep file has its own tables; it names the stray key
    (b"run = 3\n", "run must be a [run] table", "run must be a table ([run]), got 3"),
])
def test_a_config_file_is_read_in_one_place_with_a_clear_error(tmp_path, capsys, content, message,
                                                               sweep_message):
    cfg = tmp_path / "exp.toml"
    cfg.write_bytes(content)
    refused(capsys, ["run", "--config", str(cfg), "--out", str(tmp_path / "run")], message)
    refused(capsys, ["partition", "--config", str(cfg)], message)
    refused(capsys, ["sweep", "--config", str(cfg), "--dry-run", "--out", str(tmp_path / "s")],
            sweep_message or message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.toml"]


def test_a_config_file_error_through_the_real_command(tmp_path):
    (tmp_path / "exp.toml").write_bytes(b"[run]\nrounds = 1 # \xff\n")
    done = cli("run", "--config", "exp.toml", "--out", "run", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == ("cllora: error: config file 'exp.toml' is not UTF-8: byte 19 (line 2) "
                                   "is 0xff; TOML files must be UTF-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.toml"]


# ---------------------------------------------------------------- 3. settings judged before writing


def test_settings_only_the_model_or_accountant_can_judge_fail_before_anything_is_written(
        tiny_model, tmp_path, capsys):
    out = tmp_path / "run"
    refused(capsys, tiny_args(tiny_model, out, "--max-length", "1"), "--max-length must be an integer >= 2")
    refused(capsys, tiny_args(tiny_model, out, "--dp-clip", "1", "--dp-target-epsilon", "1e300"),
            "is met even by noise multiplier 0.1")
    assert not out.exists()


def test_sweep_dry_run_checks_every_cell_before_the_first(tiny_model, tmp_path, capsys):
    out = tmp_path / "sweep"
    refused(capsys, ["sweep", "--preset", "study-length", "--quick", "--model", tiny_model, "--out", str(out),
                     "--dp-clip", "1", "--grid", "dp_target_epsilon=1000,1e300", "--dry-run"],
            "dp-target-epsilon1e+300")
    assert not out.exists()


# ---------------------------------------------------------------- 4. resume of an edited run


@pytest.fixture(scope="module")
def finished_run(tiny_model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("resume") / "run"
    assert main(tiny_args(tiny_model, out)) == 0
    return out


def _edited(src: Path, dst: Path, **changes) -> Path:
    shutil.copytree(src, dst)
    doc = json.loads((dst / "config.json").read_text())
    doc["config"].update(changes)
    (dst / "config.json").write_text(json.dumps(doc))
    return dst


@pytest.mark.parametrize("changes, message", [
    ({"rank": 4}, "computed with rank=2, but config.json now says 4"),
    ({"dp_clip": 1.0, "dp_noise": 1.0}, "computed with dp_clip=None, but config.json now says 1.0"),
    ({"seed": 5}, "computed with seed=0"),
])
def test_a_resume_refuses_an_edited_config_json_and_writes_nothing(finished_run, tmp_path, capsys,
                                                                   changes, message):
    run = _edited(finished_run, tmp_path / "run", **changes)
    before = snapshot(run)
    refused(capsys, ["run", "--resume", str(run), "--rounds", "2", "--quiet"], message)
    assert snapshot(run) == before


def test_a_resume_of_an_older_checkpoint_still_checks_the_adapter_and_dp_history(finished_run, tmp_path,
                                                                                 capsys):
    """Checkpoints written before issue 32 do not record their settings: the adapter's shapes and
    the rounds' DP columns stand in."""
    from safetensors.torch import load_file, save_file

    run = _edited(finished_run, tmp_path / "rank", rank=4)
    ckpt = run / "checkpoint.safetensors"
    save_file(load_file(ckpt), ckpt, metadata={"round": "1", "meta": json.dumps({"bytes_cumulative": 0})})
    before = snapshot(run)
    refused(capsys, ["run", "--resume", str(run), "--rounds", "2", "--quiet"], "does not fit the model and rank")
    assert snapshot(run) == before
    shutil.rmtree(run)
    run = _edited(finished_run, run, dp_clip=1.0, dp_noise=1.0)
    save_file(load_file(ckpt), ckpt, metadata={"round": "1", "meta": json.dumps({"bytes_cumulative": 0})})
    before = snapshot(run)
    refused(capsys, ["run", "--resume", str(run), "--rounds", "2", "--quiet"],
            "rounds 1 were not private; a DP guarantee cannot start half-way")
    assert snapshot(run) == before


def test_resume_with_overwrite_is_refused(finished_run, capsys):
    before = snapshot(finished_run)
    refused(capsys, ["run", "--resume", str(finished_run), "--overwrite", "--quiet"],
            "continues a run and --overwrite replaces it; pass one of them")
    assert snapshot(finished_run) == before


# ---------------------------------------------------------------- 5. damaged records


def _report(run: Path, capsys) -> tuple[int, str]:
    code = main(["report", str(run)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_report_names_the_file_and_line_of_values_it_cannot_use(finished_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    lines = (run / "rounds.csv").read_text().splitlines()
    head = lines[1].split(",")
    last = lines[2].split(",")
    head[0] = "-7"
    last[1] = "inf"
    last[2] = "lots"
    (run / "rounds.csv").write_text("\n".join([lines[0], ",".join(head), ",".join(last)]) + "\n")
    code, printed = _report(run, capsys)
    assert code == 0
    assert "rounds.csv: line 2: round = -7 is not a round number" in printed
    assert "rounds.csv: line 3 (round 1): global_test_ppl = 'lots' is not a number" in printed
    assert "the last round (1) has global_test_loss inf" in printed


def test_report_on_a_config_json_of_the_wrong_shape_names_the_file(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "config.json").write_text('{"config": [1, 2]}')
    done = cli("report", "run", cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "run/config.json: 'config' must be an object of settings, got list" in done.stderr
    (run / "config.json").write_text('{"config": {"model": "m", "scheme": "iid", "rounds": -7}}')
    done = cli("report", "run", "--quiet", cwd=tmp_path)
    assert done.returncode == 2 and "config.rounds must be a whole number >= 1, got -7" in done.stderr


def test_a_final_round_that_is_not_finite_is_the_final_loss_never_an_earlier_one(finished_run, tmp_path, capsys):
    from cllora.analysis.conditions import condition_rows, run_row
    from cllora.analysis.runs import load_runs

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    lines = (run / "rounds.csv").read_text().splitlines()
    columns = lines[0].split(",")
    last = lines[-1].split(",")
    last[columns.index("global_test_loss")] = "nan"
    (run / "rounds.csv").write_text("\n".join(lines[:-1] + [",".join(last)]) + "\n")
    code, printed = _report(run, capsys)
    assert code == 0
    assert "the last round (1) has global_test_loss nan; the report's final loss is nan (not finite)" in printed
    rec = load_runs(run, log=lambda m: None)[0]
    row = run_row(rec.name, rec.config, rec.rounds, rec.complete, rec.test_losses, rec.clients)
    assert math.isnan(row["final_loss"]) and row["rounds_completed"] == 1  # not round 0's loss
    assert math.isnan(condition_rows([row])[0]["final_loss"])
    page = (run / "report.html").read_text()
    run_table = page[page.index("<th>Final loss</th>"):]
    assert ">nan<" in run_table.split("</table>")[0]
