"""SIGKILL of runners/run.py at five different points of one run, then a rerun: the finished
run of the grid is never repeated (its row and metrics untouched), the killed run resumes
from its last good checkpoint each time, and it ends with exactly the metric rows of an
uninterrupted run on the same seed; the store passes PRAGMA integrity_check after every kill.

Kill 1 is from outside, at a moment the test does not choose: the test polls until the SAM
run's first checkpoint exists, freezes the process (SIGSTOP), reads which epoch that
checkpoint holds, then SIGKILLs it. Kills 2-5 happen at exact points, injected by
tests/runners/kill_at.py around the unchanged production code.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time

import torch

from runners.engine.checkpoint import load_checkpoint
from runners.run import main
from tests.conftest import REPO
from tests.runners.fault_helpers import integrity, metric_rows

SPE = 16  # steps per epoch: 1024 examples / batch 64
EPOCHS = 8
ARGS = [
    "--domain",
    "synthetic",
    "--preset",
    "smoke",
    "--optimizer",
    "both",  # a 2-run grid: sgd first, then sam (the one killed)
    "--num_train=1024",
    f"--num_epochs={EPOCHS}",
    "--no-progress",
]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _launch(results, kill_point=None):
    cmd = [sys.executable, str(REPO / "runners" / "run.py")]
    if kill_point is not None:
        cmd = [sys.executable, str(REPO / "tests" / "runners" / "kill_at.py"), kill_point, "--"]
    return subprocess.Popen(
        [*cmd, *ARGS, "--results", str(results)],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _rows(db, sql, params=()):
    with contextlib.closing(sqlite3.connect(db)) as con:
        con.row_factory = sqlite3.Row
        return [dict(r) for r in con.execute(sql, params)]


@contextlib.contextmanager
def _one_thread():
    """In-process runs with the subprocesses' thread count: bitwise-equal float results."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _sam_state(results, sam_id):
    ckpt = results / "checkpoints" / f"{sam_id}.pt"
    files = {p: p.exists() for p in (ckpt, ckpt.with_name(ckpt.name + ".prev"))}
    payload, _ = load_checkpoint(ckpt, sam_id)
    (max_step,) = _rows(
        results / "runs.sqlite", "SELECT MAX(step) AS s FROM metrics WHERE run_id = ?", (sam_id,)
    )
    return payload["state"]["epoch"], max_step["s"], files


def _kill_at(results, point, resumed_from):
    proc = _launch(results, point)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, f"kill point {point} never reached:\n{err}"
    assert f"resumed from epoch {resumed_from} " in out + err
    assert integrity(results / "runs.sqlite") == "ok"


def test_killed_five_times_resumes_and_matches_the_uninterrupted_grid(tmp_path):
    results, clean = tmp_path / "killed", tmp_path / "clean"
    db = results / "runs.sqlite"

    # Kill 1, from outside: after the SAM run's first checkpoint appears (sgd's is there too).
    proc = _launch(results)
    deadline = time.time() + 240
    while len(list((results / "checkpoints").glob("*.pt"))) < 2 and time.time() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGSTOP)  # frozen: what is on disk now is what the kill leaves
    try:
        (sgd,) = _rows(db, "SELECT * FROM runs WHERE optimizer = 'sgd'")
        (sam,) = _rows(db, "SELECT * FROM runs WHERE optimizer = 'sam'")
        k, _, _ = _sam_state(results, sam["id"])
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
    assert sgd["status"] == "done" and sam["status"] == "running"
    assert 1 <= k <= EPOCHS - 6, f"killed too late (epoch {k}) for the kills that follow"
    sgd_metrics = _rows(
        db, "SELECT * FROM metrics WHERE run_id = ? ORDER BY step, key", (sgd["id"],)
    )
    assert integrity(db) == "ok"

    # Kill 2: epoch k+2's row is committed, its checkpoint not written.
    _kill_at(results, f"before-save:{k + 2}", resumed_from=k)
    epoch, step, _ = _sam_state(results, sam["id"])
    assert (epoch, step) == (k + 1, (k + 2) * SPE)  # the store is ahead of the checkpoint

    # Kill 3: inside epoch k+3's checkpoint write, between its two renames.
    _kill_at(results, f"mid-replace:{k + 3}", resumed_from=k + 1)
    epoch, step, files = _sam_state(results, sam["id"])
    assert list(files.values()) == [False, True]  # only .prev (epoch k+2) is left
    assert (epoch, step) == (k + 2, (k + 3) * SPE)

    # Kill 4: inside the store transaction of epoch k+4's row, half of it inserted.
    _kill_at(results, f"in-transaction:{k + 4}", resumed_from=k + 2)
    epoch, step, _ = _sam_state(results, sam["id"])
    assert (epoch, step) == (k + 3, (k + 3) * SPE)  # the half transaction was rolled back

    # Kill 5: mid-epoch k+5 (before its batch 5).
    _kill_at(results, f"batch:{k + 5}:5", resumed_from=k + 3)
    epoch, step, _ = _sam_state(results, sam["id"])
    assert (epoch, step) == (k + 4, (k + 4) * SPE)

    # The last rerun finishes; then the same grid, never interrupted, in a fresh folder.
    with _one_thread():
        assert main(ARGS + ["--results", str(results)]) == 0
        assert main(ARGS + ["--results", str(clean)]) == 0
    assert integrity(db) == "ok"
    assert metric_rows(db) == metric_rows(clean / "runs.sqlite")
    runs = _rows(db, "SELECT * FROM runs ORDER BY optimizer")
    clean_runs = _rows(clean / "runs.sqlite", "SELECT * FROM runs ORDER BY optimizer")
    assert [r["status"] for r in runs] == ["done", "done"]
    for r, c in zip(runs, clean_runs):
        assert r["id"] == c["id"] and r["last_step"] == c["last_step"] == EPOCHS * SPE
    # The finished run was never repeated: its row and its rows (wall times too) untouched.
    assert runs[1] == sgd
    assert _rows(db, "SELECT * FROM metrics WHERE run_id = ? ORDER BY step, key", (sgd["id"],)) == (
        sgd_metrics
    )
