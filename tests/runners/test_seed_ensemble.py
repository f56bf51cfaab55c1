"""--seeds as one vmapped seed ensemble (runners/engine/train_ensemble.py) against sequential runs."""

from __future__ import annotations

import sqlite3

import pytest
import torch

from runners.engine.checkpoint import load_checkpoint
from runners.run import main

SEEDS = "0,1,2"


def _run(tmp_path, name: str, workload: str, extra: list[str]) -> dict:
    """CLI in-process; returns {run_id: (status, {(step, key): value}, checkpoint model)}."""
    results = tmp_path / name
    argv = ["--workload", workload, "--seeds", SEEDS, "--results", str(results)]
    assert main([*argv, "--no-progress", *extra]) == 0
    db = sqlite3.connect(results / "runs.sqlite")
    out = {}
    for run_id, status, seed in db.execute("SELECT id, status, seed FROM runs"):
        rows = db.execute("SELECT step, key, value FROM metrics WHERE run_id = ?", (run_id,))
        metrics = {(s, k): v for s, k, v in rows if k != "time/wall_s"}
        payload, _ = load_checkpoint(results / "checkpoints" / f"{run_id}.pt")
        out[run_id] = (status, seed, metrics, payload)
    return out


@pytest.mark.parametrize(
    "workload,args",
    [
        ("synthetic-regression", ["--preset", "smoke", "--optimizer", "both"]),
        ("mnist-mlp", ["--preset", "tiny", "--optimizer", "sam", "--num_epochs=2"]),
    ],
)
def test_ensemble_equals_sequential_runs(tmp_path, workload, args):
    ens = _run(tmp_path, "ensemble", workload, args)
    seq = _run(tmp_path, "sequential", workload, [*args, "--no-seed-ensemble"])
    assert set(ens) == set(seq)  # the same experiments: the same run ids
    assert len(ens) == 3 * (2 if "both" in args else 1)
    for run_id, (status, seed, metrics, payload) in seq.items():
        e_status, e_seed, e_metrics, e_payload = ens[run_id]
        assert status == e_status == "done" and seed == e_seed
        assert set(metrics) == set(e_metrics)
        for key, value in metrics.items():
            assert e_metrics[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
        for name, w in payload["model"].items():
            torch.testing.assert_close(e_payload["model"][name], w, rtol=1e-4, atol=1e-6)
        # the checkpoint is the sequential run's: same optimizer state (SGD momentum buffers)
        for k, st in payload["optimizer"]["state"].items():
            for field, v in st.items():
                torch.testing.assert_close(
                    e_payload["optimizer"]["state"][k][field], v, rtol=1e-4, atol=1e-6
                )
        assert e_payload["optimizer"]["param_groups"] == payload["optimizer"]["param_groups"]
        assert e_payload["scheduler"] == payload["scheduler"]


def test_a_killed_seed_resumes_alone_and_done_seeds_are_skipped(tmp_path):
    """Rerunning after all seeds are done trains nothing; a seed whose run row exists but is
    not done resumes from its own (ensemble-written) checkpoint through train_run."""
    args = ["--preset", "smoke", "--optimizer", "base"]
    first = _run(tmp_path, "r", "synthetic-regression", args)
    db = sqlite3.connect(tmp_path / "r" / "runs.sqlite")
    killed = next(iter(first))
    last_step = max(s for s, _ in first[killed][2])
    with db:  # as if killed after its last checkpoint: the final row's status not written
        db.execute("UPDATE runs SET status = 'running' WHERE id = ?", (killed,))
    again = _run(tmp_path, "r", "synthetic-regression", args)
    for run_id, (status, _, metrics, _) in again.items():
        assert status == "done"
        assert metrics == first[run_id][2]
    assert max(s for s, _ in again[killed][2]) == last_step
