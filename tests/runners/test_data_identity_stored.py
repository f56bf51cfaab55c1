"""Each done run's stored summary names its data (issue 20, finding 2): the files it read with
the canonical sizes and SHA-256 (from domains/data_check.CANONICAL, not from the run), or the
generator and its parameters; the data is not part of the run id."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from domains.data_check import CANONICAL
from runners.run import main

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def _summaries(results: Path) -> list[dict]:
    db = sqlite3.connect(results / "runs.sqlite")
    rows = db.execute("SELECT status, summary FROM runs").fetchall()
    assert rows and all(status == "done" for status, _ in rows)
    return [json.loads(summary) for _, summary in rows]


@pytest.mark.skipif(not (DATA / "MNIST").is_dir(), reason="no shared data")
def test_a_done_mnist_run_stores_its_files_sizes_and_digests(tmp_path, monkeypatch):
    monkeypatch.delenv("SAM_DATA_UNCHECKED", raising=False)  # the canonical files, checked
    argv = ["--workload", "mnist-mlp", "--preset", "smoke", "--optimizer", "base"]
    argv += ["--data-root", str(DATA), "--results", str(tmp_path), "--no-progress"]
    assert main(argv) == 0
    (summary,) = _summaries(tmp_path)
    expected = {
        str(DATA / rel): {"size": size, "sha256": digest}
        for rel, (size, digest) in CANONICAL.items()
        if rel.startswith("MNIST/")
    }
    assert len(expected) == 4 and summary["data"] == {"files": expected}


def test_a_synthetic_run_stores_its_generator_and_the_id_ignores_it(tmp_path):
    argv = ["--domain", "synthetic", "--preset", "smoke", "--optimizer", "base", "--no-progress"]
    assert main([*argv, "--results", str(tmp_path)]) == 0
    (summary,) = _summaries(tmp_path)
    assert summary["data"]["generated"] == "domains.synthetic.regression.TeacherStudentRegression"
    assert summary["data"]["params"]["data_seed"] == 0
    db = sqlite3.connect(tmp_path / "runs.sqlite")
    (config,) = db.execute("SELECT config FROM runs").fetchone()
    assert "data" not in json.loads(config)["run"]  # the run's identity is its config alone


def test_a_run_stores_the_fields_it_changed_from_its_preset_outside_its_id(tmp_path):
    """The report gives the paper's numbers only to runs of the paper's exact recipe: a run
    records which workload-config fields the command line changed from its preset."""
    argv = ["--domain", "synthetic", "--preset", "smoke", "--optimizer", "base", "--no-progress"]
    assert main([*argv, "--results", str(tmp_path / "a")]) == 0
    assert main([*argv, "--num_epochs=1", "--data_seed=3", "--results", str(tmp_path / "b")]) == 0
    changed = {}
    for name in ("a", "b"):
        db = sqlite3.connect(tmp_path / name / "runs.sqlite")
        (config,) = db.execute("SELECT config FROM runs").fetchone()
        config = json.loads(config)
        assert "changed_from_preset" not in config["run"]
        changed[name] = config["changed_from_preset"]
    assert changed == {"a": [], "b": ["data_seed", "num_epochs"]}
