"""A seed ensemble interrupted mid-epoch and resumed (each seed from its own ensemble-written
checkpoint, one seed at a time through train_run) ends where the uninterrupted ensemble ends
(issue 20, rough edges: reported 1e-3 relative off). Measured on this code: at most 3e-7
relative on any metric row, float32 rounding of the single model's arithmetic against the
vmapped one after the resume point; the bound below is 30x that, 300x under the report."""

from __future__ import annotations

import sqlite3

import pytest

import runners.run
from runners.run import main

ARGS = ["--domain", "synthetic", "--width", "1x", "--optimizer", "sam", "--seeds", "0,1"]
ARGS += ["--preset", "smoke", "--num_epochs=4", "--num_train=1024", "--momentum=0.9"]
ARGS += ["--no-progress"]


def _metrics(results) -> dict:
    db = sqlite3.connect(results / "runs.sqlite")
    rows = db.execute("SELECT run_id, step, key, value FROM metrics WHERE key NOT LIKE 'time/%'")
    statuses = {s for (s,) in db.execute("SELECT status FROM runs")}
    return {(r, s, k): v for r, s, k, v in rows}, statuses


def test_interrupted_ensemble_resumed_per_seed_equals_uninterrupted(tmp_path, monkeypatch):
    real_create = runners.run.create_workload

    def interrupted_workload(*args, **kwargs):  # Ctrl-C at batch 3 of epoch 3
        workload = real_create(*args, **kwargs)
        real_batches = workload.train_batches

        def train_batches(epoch, generator):
            for j, batch in enumerate(real_batches(epoch, generator)):
                if (epoch, j) == (2, 3):
                    raise KeyboardInterrupt
                yield batch

        workload.train_batches = train_batches
        return workload

    monkeypatch.setattr(runners.run, "create_workload", interrupted_workload)
    assert main([*ARGS, "--results", str(tmp_path / "cut")]) == 130
    cut, statuses = _metrics(tmp_path / "cut")
    assert statuses == {"interrupted"} and max(s for _, s, _ in cut) > 0
    monkeypatch.setattr(runners.run, "create_workload", real_create)
    for seed in ("0", "1"):  # resumed one seed at a time
        argv = [*ARGS, "--results", str(tmp_path / "cut")]
        argv[argv.index("0,1")] = seed
        assert main(argv) == 0
    whole = tmp_path / "whole"
    assert main([*ARGS, "--results", str(whole)]) == 0
    resumed, statuses = _metrics(tmp_path / "cut")
    expected, _ = _metrics(whole)
    assert statuses == {"done"} and set(resumed) == set(expected)
    for key, value in expected.items():
        assert resumed[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
