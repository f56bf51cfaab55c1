"""Several processes on one store at once: no row lost, no "database is locked", and a reader
never sees half of a write.

Six writer processes (spawned, as sweep workers are) open a store that does not exist yet,
each starts its own run, logs 300 steps of two keys (one transaction per step), and finishes
it; all six also start and finish one shared run id over and over. A seventh process reads
throughout and checks, in single-statement snapshots, that every logged step has both of its
keys and that each run's ``last_step`` equals its largest logged step (both written in the
same transaction).
"""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
import traceback

from results.store import Store
from tests.results.known_store import start_toy_run

WRITERS, STEPS, SHARED_EVERY = 6, 300, 30


def _start(store: Store, run_id: str) -> None:
    start_toy_run(store, run_id, preset="smoke", config={"id": run_id})


def _writer(path, k: int, go, errors) -> None:
    try:
        go.wait()
        store = Store(path)  # all at once, on a file that may not exist yet
        run_id = f"run{k}"
        _start(store, run_id)
        for step in range(1, STEPS + 1):
            store.log_metrics(run_id, step, step / 10, {"a": step, "b": k * 1000 + step})
            if step % SHARED_EVERY == 0:  # the same run id, from every process
                _start(store, "shared")
                store.log_metrics("shared", k * STEPS + step, None, {"a": k, "b": step})
                store.finish_run("shared", "done", summary={"by": k}, last_step=step)
        store.finish_run(run_id, "done", summary={"steps": STEPS}, last_step=STEPS)
        store.close()
    except BaseException:
        errors.put(f"writer {k}: {traceback.format_exc()}")


_TORN = """
SELECT
  (SELECT COUNT(*) FROM (SELECT 1 FROM metrics GROUP BY run_id, step HAVING COUNT(*) != 2)),
  (SELECT COUNT(*) FROM runs r WHERE r.id != 'shared' AND r.status = 'running'
     AND r.last_step IS NOT (SELECT MAX(step) FROM metrics m WHERE m.run_id = r.id)),
  (SELECT COUNT(*) FROM metrics)
"""


def _reader(path, go, stop, errors, seen) -> None:
    counts: list[int] = []
    try:
        go.wait()
        while not stop.is_set():
            try:
                con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)
                torn_steps, stale_runs, n = con.execute(_TORN).fetchone()
                con.close()
            except sqlite3.OperationalError as exc:
                if "unable to open" in str(exc) or "no such table" in str(exc):
                    continue  # the writers have not created the file or the schema yet
                raise
            if torn_steps or stale_runs:
                errors.put(f"reader saw {torn_steps} half-written steps, {stale_runs} stale runs")
                return
            counts.append(n)
    except BaseException:
        errors.put(f"reader: {traceback.format_exc()}")
    finally:
        seen.put(counts)  # one message: a process with a full queue pipe cannot exit


def test_six_writers_and_a_reader_lose_nothing(tmp_path):
    ctx = mp.get_context("spawn")
    path = tmp_path / "runs.sqlite"
    go, stop = ctx.Event(), ctx.Event()
    errors, seen = ctx.Queue(), ctx.Queue()
    writers = [ctx.Process(target=_writer, args=(path, k, go, errors)) for k in range(WRITERS)]
    reader = ctx.Process(target=_reader, args=(path, go, stop, errors, seen))
    for p in [*writers, reader]:
        p.start()
    go.set()
    for p in writers:
        p.join(240)
    stop.set()
    counts = seen.get(timeout=60)
    reader.join(60)
    problems = []
    while not errors.empty():
        problems.append(errors.get())
    assert not problems, "\n".join(problems)
    assert [p.exitcode for p in [*writers, reader]] == [0] * (WRITERS + 1)
    assert len(set(counts)) > 1  # the reader did read while the writes went on
    assert counts == sorted(counts)  # and saw the store only grow

    with Store(path) as store:
        per_shared = STEPS // SHARED_EVERY
        assert store.counts() == {
            "runs": WRITERS + 1,
            "metrics": 2 * WRITERS * (STEPS + per_shared),  # rows lost: 0
        }
        for k in range(WRITERS):
            run = store.get_run(f"run{k}")
            assert run["status"] == "done" and run["last_step"] == STEPS
            rows = store.metrics(f"run{k}", "b")
            assert [r["value"] for r in rows] == [k * 1000 + s for s in range(1, STEPS + 1)]
        shared = store.get_run("shared")
        # every process's last call on it is a finish: the final state is a finished run
        assert shared["status"] == "done" and shared["ended_at"] is not None
        assert len(store.metrics("shared")) == 2 * WRITERS * per_shared
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
