"""A run killed with SIGKILL resumes from its last checkpoint and ends exactly where an
uninterrupted run on the same seed ends; checkpoints are checksummed."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import torch

from runners.checkpoint import CorruptCheckpoint, load_checkpoint, save_checkpoint
from tests.conftest import REPO

ARGS = [
    "--domain",
    "synthetic",
    "--preset",
    "quick",
    "--optimizer",
    "sam",
    "--width",
    "1x",
    "--num_train=2048",
    "--num_epochs=40",
    "--warmup_steps=16",
    "--no-progress",
]


def _start(tmp_path, results):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [sys.executable, str(REPO / "runners" / "run.py"), *ARGS, "--results", results],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _rows(db):
    with sqlite3.connect(db) as con:
        metrics = con.execute(
            "SELECT step, key, value FROM metrics WHERE key NOT LIKE 'time/wall%' "
            "ORDER BY step, key"
        ).fetchall()
        status = con.execute("SELECT status, summary FROM runs").fetchall()
    return metrics, status


def _without_wall(summary_json):
    return {k: v for k, v in json.loads(summary_json).items() if "wall" not in k}


def _epochs_logged(db):
    try:
        with sqlite3.connect(db, timeout=1) as con:
            return con.execute("SELECT COUNT(DISTINCT step) FROM metrics").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_sigkill_then_rerun_resumes_and_matches_uninterrupted(tmp_path):
    killed = _start(tmp_path, "killed")
    db = tmp_path / "killed" / "runs.sqlite"
    deadline = time.time() + 120
    while _epochs_logged(db) < 5 and time.time() < deadline and killed.poll() is None:
        time.sleep(0.05)
    assert killed.poll() is None, "run finished before it could be killed; make it longer"
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT status FROM runs").fetchone()[0] == "running"

    resumed = subprocess.run(
        [sys.executable, str(REPO / "runners" / "run.py"), *ARGS, "--results", "killed"],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from epoch" in resumed.stdout + resumed.stderr

    clean = _start(tmp_path, "clean")
    clean.communicate(timeout=300)
    assert clean.returncode == 0
    m_killed, s_killed = _rows(db)
    m_clean, s_clean = _rows(tmp_path / "clean" / "runs.sqlite")
    assert s_killed[0][0] == "done"
    assert m_killed == m_clean  # same seed, same CPU: identical metric rows
    assert _without_wall(s_killed[0][1]) == _without_wall(s_clean[0][1])
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_corrupt_checkpoint_is_detected_and_the_previous_one_used(tmp_path):
    path = tmp_path / "run.pt"
    save_checkpoint(path, {"step": 1, "w": torch.ones(3)})
    save_checkpoint(path, {"step": 2, "w": torch.ones(3) * 2})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated
    payload, warnings = load_checkpoint(path)
    assert payload["step"] == 1 and "checksum" in warnings[0]
    (tmp_path / "run.pt.prev").write_bytes(b"garbage")
    payload, warnings = load_checkpoint(path)
    assert payload is None and len(warnings) == 2


def test_checkpoint_flipped_byte_fails_checksum(tmp_path):
    path = tmp_path / "run.pt"
    save_checkpoint(path, {"w": torch.arange(100.0)})
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF
    path.write_bytes(bytes(data))
    from runners.checkpoint import _read

    with pytest.raises(CorruptCheckpoint):
        _read(path)


def test_stored_config_alone_rebuilds_the_workload():
    """RunConfig.from_dict + workload_for_run give back the identical run (same hash) and an
    identical workload config, after a JSON round trip as in the store."""
    import dataclasses
    import json

    from domains import create_workload
    from runners.config import RunConfig, workload_for_run

    w = create_workload("mnist-mlp", "quick", label_noise="0.2", lr_milestones="0.5,0.75")
    cfg = RunConfig(
        workload="mnist-mlp",
        preset="quick",
        width=4.0,
        optimizer="sam",
        base_optimizer="sgd",
        rho=0.1,
        workload_config=dataclasses.asdict(w.config),
    )
    back = RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back.run_id == cfg.run_id
    assert workload_for_run(back).config == w.config
    with pytest.raises(ValueError, match="unknown keys"):
        RunConfig.from_dict({**cfg.to_dict(), "sam_strat": 0.5})
