"""End to end: ``runners/run.py --domain language`` as a user runs it."""

from __future__ import annotations

import json
import sqlite3

import pytest
import torch

from domains import MissingDataError, create_workload
from tests.conftest import run_cli

pytestmark = pytest.mark.language


def test_list_shows_every_language_workload_and_width(tmp_path):
    res = run_cli(["--list", "--domain", "language", "--format", "json"], tmp_path)
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    by_name: dict[str, list[int]] = {}
    for r in rows:
        by_name.setdefault(r["workload"], []).append(r["params"])
    assert set(by_name) == {"sst2-lstm", "sst2-transformer", "ud-pos-transformer"}
    assert [len(by_name[n]) for n in sorted(by_name)] == [6, 5, 5]
    for counts in by_name.values():
        assert all(a < b for a, b in zip(counts, counts[1:])), counts


def test_smoke_run_of_the_default_language_workload(tmp_path, data_root):
    res = run_cli(
        [
            "--domain",
            "language",
            "--preset",
            "smoke",
            "--results",
            str(tmp_path / "r"),
            "--no-progress",
        ],
        tmp_path,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    db = sqlite3.connect(tmp_path / "r" / "runs.sqlite")
    rows = db.execute("SELECT workload, optimizer, status FROM runs ORDER BY optimizer").fetchall()
    assert rows == [("sst2-lstm", "sam", "done"), ("sst2-lstm", "sgd", "done")]
    keys = {k for (k,) in db.execute("SELECT DISTINCT key FROM metrics")}
    assert {"val/acc", "test/acc", "train/loss"} <= keys


def test_missing_data_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")  # no download attempt
    w = create_workload("sst2-lstm", "smoke")
    with pytest.raises(MissingDataError) as err:
        w.setup_data(tmp_path / "none", torch.device("cpu"))
    msg = str(err.value)
    assert "SST-2" in msg and str(tmp_path / "none") in msg and "--data-root" in msg
