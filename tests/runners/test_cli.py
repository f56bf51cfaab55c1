"""runners/run.py end to end in a subprocess, as a user runs it."""

from __future__ import annotations

import json
import sqlite3

import pytest

from runners.run import main
from tests.conftest import run_cli

SMOKE = ["--domain", "synthetic", "--preset", "smoke", "--no-progress"]


def _counts(db):
    if not db.exists():
        return None
    with sqlite3.connect(db) as con:
        return tuple(
            con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("runs", "metrics")
        )


def test_end_to_end_smoke_then_skip(tmp_path):
    res = run_cli(SMOKE + ["--width", "1x,2x", "--results", "out"], tmp_path)
    assert res.returncode == 0, res.stderr
    db = tmp_path / "out" / "runs.sqlite"
    with sqlite3.connect(db) as con:
        rows = con.execute(
            "SELECT optimizer, width, status, n_params FROM runs ORDER BY width, optimizer"
        ).fetchall()
        assert rows == [
            ("sam", 1.0, "done", 10_201),
            ("sgd", 1.0, "done", 10_201),
            ("sam", 2.0, "done", 20_401),
            ("sgd", 2.0, "done", 20_401),
        ]
        keys = {k for (k,) in con.execute("SELECT DISTINCT key FROM metrics")}
    assert {
        "train/loss_first_pass",
        "val/mse",
        "test/mse",
        "sam/grad_norm",
        "sam/perturbation_norm",
        "time/wall_s",
    } <= keys
    assert res.stdout.count("done ") == 4 and "| 2x | 20,401 |" in res.stdout
    before = _counts(db)
    again = run_cli(SMOKE + ["--width", "1x,2x", "--results", "out"], tmp_path)
    assert again.returncode == 0 and again.stdout.count("already done") == 4
    assert _counts(db) == before

    report = run_cli(["--results", "out"], tmp_path, script="report.py")
    assert report.returncode == 0 and "| 1x | 10,201 |" in report.stdout
    assert (tmp_path / "out" / "tables" / "summary.md").exists()


def test_list_json_has_widths_and_parameter_counts(tmp_path):
    res = run_cli(["--list", "--format", "json", "--domain", "synthetic"], tmp_path)
    assert res.returncode == 0, res.stderr
    rows = [r for r in json.loads(res.stdout) if r["workload"] == "synthetic-regression"]
    assert rows[0] == {
        "domain": "synthetic",
        "workload": "synthetic-regression",
        "width": "1x",
        "params": 10_201,
    }
    assert [r["params"] for r in rows][-1] == 102_001
    text = run_cli(["--list"], tmp_path)
    assert text.returncode == 0 and "synthetic-regression" in text.stdout


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--domain", "chemistry"], "unknown domain 'chemistry'"),
        (["--workload", "nope"], "unknown workload 'nope'"),
        (["--width", "4y"], "width"),
        (["--width", "0x"], "width"),
        (["--width", "-1x"], "width"),
        (["--rho", "-0.1"], "rho"),
        (["--rho", "abc"], "rho"),
        (["--optimizer", "lion"], "invalid choice"),
        (["--seeds", "a,b"], "seeds"),
        (["--preset", "fast"], "unknown preset"),
        (["--num_epoch=3"], "unknown config key"),
        (["--num_epochs=x"], "integer"),
        (["--device", "cuda:7"], "cuda"),
        (["--workload", "synthetic-regression", "--domain", "graph"], "is in domain"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_stores_nothing(
    tmp_path, monkeypatch, capsys, args, needle
):
    monkeypatch.chdir(tmp_path)  # in-process: the same main() the script calls
    base = ["--domain", "synthetic", "--preset", "smoke", "--results", "out"]
    assert main(base + args) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("run.py: error:") and needle in lines[0], err
    assert _counts(tmp_path / "out" / "runs.sqlite") in (None, (0, 0))


def test_bad_input_through_the_script_exits_2(tmp_path):
    res = run_cli(["--domain", "synthetic", "--width", "4y"], tmp_path)
    assert res.returncode == 2 and res.stderr.startswith("run.py: error: width")


def test_bad_input_leaves_an_existing_store_unchanged(tmp_path):
    ok = run_cli(SMOKE + ["--optimizer", "base", "--results", "out"], tmp_path)
    assert ok.returncode == 0, ok.stderr
    db = tmp_path / "out" / "runs.sqlite"
    before = _counts(db)
    bad = run_cli(SMOKE + ["--rho", "-1", "--results", "out"], tmp_path)
    assert bad.returncode == 2 and _counts(db) == before


def test_unwritable_results_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    res = run_cli(SMOKE + ["--results", str(blocker / "sub")], tmp_path)
    assert res.returncode == 2 and "file is a file, expected a folder" in res.stderr


def test_fp16_grad_scaler_run_records_skipped_steps(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(SMOKE + ["--optimizer", "sam", "--precision", "fp16", "--results", "out"]) == 0
    with sqlite3.connect(tmp_path / "out" / "runs.sqlite") as con:
        keys = {k for (k,) in con.execute("SELECT DISTINCT key FROM metrics")}
        (config,) = con.execute("SELECT config FROM runs").fetchone()
    assert {"train/skipped_steps", "train/loss_scale"} <= keys
    assert json.loads(config)["run"]["precision"] == "fp16"


def test_no_weight_decay_flag_sets_the_workload_field(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    base = ["--workload", "synthetic-regression", "--preset", "smoke", "--list-config"]
    assert main(base + ["--weight_decay=0.01"]) == 0
    assert json.loads(capsys.readouterr().out)["weight_decay"] == 0.01
    assert main(base + ["--no-weight-decay"]) == 0
    assert json.loads(capsys.readouterr().out)["weight_decay"] == 0.0
    assert main(base + ["--no-weight-decay", "--weight_decay=0.01"]) == 2


def test_run_flags_are_not_abbreviated_into_overrides(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    # "--seed" is not "--seeds": it is a workload key, and this workload has no such key.
    assert main(["--domain", "synthetic", "--preset", "smoke", "--seed=3"]) == 2
    assert "unknown config key 'seed'" in capsys.readouterr().err


def test_default_results_folder_is_runs_outside_the_results_package(tmp_path):
    """Without --results, runs land in ./runs (ignored by git), not in the results package."""
    from tests.conftest import REPO, run_cli

    args = ["--workload", "synthetic-regression", "--preset", "smoke", "--optimizer", "base"]
    res = run_cli([*args, "--num_epochs=1"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "runs" / "runs.sqlite").is_file()
    assert not (tmp_path / "results").exists()
    assert "/runs/" in (REPO / ".gitignore").read_text().split()
