"""Run leases (issue 20, finding 1): a run is claimed in the store before it trains; a run held
by a live process is skipped, one whose holder is dead is taken over; two or more invocations
on one grid train each run once and end with the rows one invocation writes.

Before leases, the issue's repro (two run.py on one grid) trained every run twice, stored
runs that never failed as ``failed`` (a shared ``<id>.pt.tmp`` renamed away by the other
writer) and mixed metric rows of two trainings.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from results.store import Store
from runners.engine import lease
from runners.engine.checkpoint import save_checkpoint
from runners.engine.train import train_run
from runners.engine.train_ensemble import train_seeds
from tests.conftest import REPO
from tests.runners.fault_helpers import (
    metric_rows,
    run_config,
    summary_without_wall,
    synthetic,
    train,
)

HOST = socket.gethostname()


def _dead_pid() -> int:
    """The pid of a process of this host that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _hold_as(store: Store, run_id: str, *, pid: int, host: str = HOST, age_s: float = 0.0):
    """A lease row as another process would have written it."""
    claimed = store.claim_runs(
        [run_id], owner=f"{host}:{pid}:other", host=host, pid=pid, is_dead=lambda _: True
    )
    assert claimed == [run_id]
    with contextlib.closing(sqlite3.connect(store.path)) as con, con:
        con.execute(
            "UPDATE leases SET heartbeat = ? WHERE run_id = ?", (time.time() - age_s, run_id)
        )


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "runs.sqlite") as s:
        yield s


@pytest.fixture
def live_pid():
    """A live process of this host that is not the test process."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc.pid
    proc.kill()
    proc.wait()


# ------------------------------------------------------------------------- claim and release
def test_claim_is_exclusive_reentrant_and_released(store, live_pid):
    _hold_as(store, "b", pid=live_pid)
    with lease.hold_lease(store, ["a", "b", "c"]) as held:
        assert held == ["a", "c"]  # b belongs to a live process
        row = store.lease("a")
        assert (row["host"], row["pid"], row["owner"]) == (HOST, os.getpid(), lease.process_owner())
        with lease.hold_lease(store, ["a"]) as inner:  # train_seeds -> train_run: same process
            assert inner == ["a"]
        assert store.lease("a") is not None  # the inner block did not release the outer claim
    assert store.lease("a") is None and store.lease("c") is None
    assert store.lease("b")["pid"] == live_pid  # another's lease is never released by us


@pytest.mark.parametrize(
    "holder,taken",
    [
        ({"pid": "dead"}, True),  # killed on this host: pid gone
        ({"pid": "live", "age_s": lease.STALE_S + 5}, True),  # hung: heartbeat stale
        ({"pid": "live"}, False),
        ({"pid": "dead", "host": "another-host"}, False),  # a pid of another host means nothing
        ({"pid": "dead", "host": "another-host", "age_s": lease.STALE_S + 5}, True),
    ],
)
def test_dead_holder_is_taken_over_live_one_is_not(store, live_pid, holder, taken):
    pid = live_pid if holder.pop("pid") == "live" else _dead_pid()
    _hold_as(store, "r", pid=pid, **holder)
    with lease.hold_lease(store, ["r"]) as held:
        assert held == (["r"] if taken else [])
        assert (store.lease("r")["pid"] == os.getpid()) == taken


def test_heartbeat_renews_only_the_owners_leases(store, live_pid, monkeypatch):
    _hold_as(store, "other", pid=live_pid, age_s=30)
    monkeypatch.setattr(lease, "HEARTBEAT_S", 0.05)
    with lease.hold_lease(store, ["mine"]):
        with contextlib.closing(sqlite3.connect(store.path)) as con, con:
            con.execute("UPDATE leases SET heartbeat = 0 WHERE run_id = 'mine'")
        deadline = time.time() + 10
        while store.lease("mine")["heartbeat"] < time.time() - 5 and time.time() < deadline:
            time.sleep(0.05)
        assert store.lease("mine")["heartbeat"] > time.time() - 5  # renewed by the thread
    assert store.lease("other")["heartbeat"] < time.time() - 29  # not renewed by us


# ------------------------------------------------------------------------- the training loop
def test_train_run_and_train_seeds_are_leased():
    """The loop's entry points claim their runs (the decorator must survive refactors)."""
    assert train_run.__wrapped__ is not None and train_seeds.__wrapped__ is not None


def test_run_held_by_a_live_process_is_skipped_untouched(tmp_path, live_pid):
    workload = synthetic()
    cfg = run_config(workload)
    with Store(tmp_path / "runs.sqlite") as store:
        _hold_as(store, cfg.run_id, pid=live_pid)
    out = train(workload, cfg, tmp_path)
    assert out.status == "skipped" and f"pid {live_pid}" in out.message
    with Store(tmp_path / "runs.sqlite") as store:
        assert store.get_run(cfg.run_id) is None and store.counts()["metrics"] == 0
    assert not (tmp_path / "checkpoints").exists()


def test_seed_group_trains_the_free_seeds_and_skips_the_held_one(tmp_path, live_pid):
    workload = synthetic()
    cfgs = [run_config(workload, seed=s) for s in (0, 1, 2)]
    from runners.engine.train import Execution

    with Store(tmp_path / "runs.sqlite") as store:
        _hold_as(store, cfgs[1].run_id, pid=live_pid)
        outs = train_seeds(workload, cfgs, store, Execution(results_dir=tmp_path, progress=False))
        assert [o.status for o in outs] == ["done", "skipped", "done"]
        assert store.get_run(cfgs[1].run_id) is None
        assert store.lease(cfgs[0].run_id) is None  # released after training


def test_run_of_a_dead_holder_is_taken_over_and_ends_as_one_training(tmp_path):
    workload = synthetic()
    cfg = run_config(workload)
    reference = tmp_path / "ref"
    ref = train(workload, cfg, reference)
    shared = tmp_path / "shared"
    with Store(shared / "runs.sqlite") as store:
        _hold_as(store, cfg.run_id, pid=_dead_pid())  # e.g. a kill -9 mid-run
    out = train(workload, cfg, shared)
    assert out.status == "done"
    assert summary_without_wall(out.summary) == summary_without_wall(ref.summary)
    assert metric_rows(shared / "runs.sqlite") == metric_rows(reference / "runs.sqlite")


def test_checkpoint_temporary_is_unique_per_writer(tmp_path):
    """Another writer's temporary (the name every writer used before) is left alone."""
    path = tmp_path / "r.pt"
    theirs = tmp_path / "r.pt.tmp"
    theirs.write_bytes(b"another process is writing this")
    save_checkpoint(path, {"run_id": "r", "x": 1})
    assert theirs.read_bytes() == b"another process is writing this"
    assert path.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["r.pt", "r.pt.tmp"]


# ------------------------------------------------------------------------- several invocations
def _grid(results: Path, epochs: int, n_train: int) -> list[str]:
    return [
        "--domain", "synthetic", "--width", "1x,2x", "--optimizer", "both", "--seeds", "0,1",
        "--preset", "smoke", f"--num_epochs={epochs}", f"--num_train={n_train}",
        "--results", str(results), "--no-progress",
    ]  # fmt: skip


def _launch(args: list[str], cwd: Path) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [sys.executable, str(REPO / "runners" / "run.py"), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _rows(db: Path) -> tuple[list, list]:
    with Store(db) as store:
        runs = [
            (r["id"], r["status"], r["n_params"], r["last_step"], r["error"],
             summary_without_wall(r["summary"]))
            for r in store.runs()
        ]  # fmt: skip
        assert store.lease(runs[0][0]) is None  # nothing left claimed
    return runs, metric_rows(db)


def _concurrent_matches_single(tmp_path: Path, trials: int, epochs: int, n_train: int) -> None:
    reference = tmp_path / "single"
    proc = _launch(_grid(reference, epochs, n_train), tmp_path)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    expected = _rows(reference / "runs.sqlite")
    assert len(expected[0]) == 8 and all(r[1] == "done" for r in expected[0])
    for trial in range(trials):
        results = tmp_path / f"shared{trial}"
        procs = [_launch(_grid(results, epochs, n_train), tmp_path) for _ in range(3)]
        outputs = [p.communicate(timeout=300) for p in procs]
        for p, (out, err) in zip(procs, outputs):
            assert p.returncode == 0, err
            assert "failed" not in out
        trained = [
            line for out, _ in outputs for line in out.splitlines() if line.startswith("done")
        ]
        assert len(trained) == 8, trained  # each run trained by exactly one process
        assert _rows(results / "runs.sqlite") == expected
        leftovers = [p.name for p in (results / "checkpoints").iterdir() if "tmp" in p.name]
        assert leftovers == []


@pytest.mark.slow  # ~25 s alone, 80 s on 2 busy cores: the in-process tests above are the fast ones
def test_three_invocations_on_one_grid_train_each_run_once(tmp_path):
    _concurrent_matches_single(tmp_path, trials=1, epochs=2, n_train=512)


@pytest.mark.slow  # ~1 min per trial on 2 busy cores: the issue's repro, 3 processes, 3 times
def test_issue_repro_three_processes_several_times(tmp_path):
    _concurrent_matches_single(tmp_path, trials=3, epochs=6, n_train=2048)
