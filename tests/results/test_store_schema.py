"""Opening a store: integrity check, schema version, upgrades, and disk full (issue 20,
findings 5 and 6, and the ``interrupted`` status).

A file this code cannot use (damaged page, newer schema, another program's tables) is refused
with one StoreError line and left byte for byte unchanged: no WAL switch, no tables created.
Stores written before schema versions existed (user_version 0) open, keep every row, and are
upgraded to the current version; a write that fills the disk says "disk full".
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from results.store import SCHEMA_VERSION, STATUSES, Store, StoreError
from tests.results.known_store import start_toy_run
from tests.results.store_files import N_RUNS, STEPS, corrupt_page, digest, legacy_store


def _rows(path: Path) -> dict[str, list[tuple]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        tables = ["runs", "metrics"] + (
            ["measures"]
            if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'measures'").fetchone()
            else []
        )
        return {t: db.execute(f"SELECT * FROM {t} ORDER BY 1, 2, 3").fetchall() for t in tables}


def _user_version(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute("PRAGMA user_version").fetchone()[0]


# ---------------------------------------------------------------------- existing stores open
@pytest.mark.parametrize("version", [0, 1])
def test_legacy_store_opens_keeps_every_row_and_is_upgraded(tmp_path, version):
    db = legacy_store(tmp_path / "runs.sqlite", version=version)
    before = _rows(db)
    assert len(before["runs"]) == N_RUNS and len(before["metrics"]) == N_RUNS * STEPS * 2
    with Store(db) as store:
        assert store.counts() == {"runs": N_RUNS, "metrics": N_RUNS * STEPS * 2}
        assert [r["id"] for r in store.runs(status="failed")] == ["r1", "r5", "r9"]
        store.finish_run("r3", "interrupted", error="interrupted")  # refused by the old CHECK
        assert store.get_run("r3")["status"] == "interrupted"
    assert _user_version(db) == SCHEMA_VERSION == 3
    after = _rows(db)
    assert after["metrics"] == before["metrics"] and after["measures"] == before["measures"]
    changed = [a for a, b in zip(after["runs"], before["runs"]) if a != b]
    assert [r[0] for r in changed] == ["r3"]  # only the run finished above
    with contextlib.closing(sqlite3.connect(db)) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        indexes = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert "runs_by_workload" in indexes
        with pytest.raises(sqlite3.IntegrityError):  # the CHECK constraint is still there
            con.execute("UPDATE runs SET status = 'paused' WHERE id = 'r0'")


def test_legacy_store_without_measures_gets_the_table(tmp_path):
    db = legacy_store(tmp_path / "runs.sqlite", with_measures=False)
    with Store(db) as store:
        store.log_measure("r0", "lambda_max", 2.0)
        assert store.counts()["runs"] == N_RUNS
        assert [m["value"] for m in store.measures("r0")] == [2.0]


def test_the_old_check_constraint_refuses_interrupted(tmp_path):
    """Why version 1 -> 2 rebuilds the table: the legacy CHECK does not allow the new status."""
    db = legacy_store(tmp_path / "runs.sqlite")
    with contextlib.closing(sqlite3.connect(db)) as con, pytest.raises(sqlite3.IntegrityError):
        con.execute("UPDATE runs SET status = 'interrupted' WHERE id = 'r0'")
    assert "interrupted" in STATUSES


def test_new_store_is_stamped_and_current_store_is_not_rewritten(tmp_path):
    db = tmp_path / "runs.sqlite"
    with Store(db) as store:
        start_toy_run(store, "a")
    assert _user_version(db) == SCHEMA_VERSION
    Store(db).close()  # closing checkpoints the WAL into the file: compare after that
    before = digest(db)
    with Store(db) as store:  # a current store: read, nothing to upgrade
        assert store.get_run("a")["status"] == "running"
    assert digest(db) == before


# ---------------------------------------------------------------------- files refused
def _refused(db: Path, *needles: str) -> None:
    before, siblings = digest(db), sorted(p.name for p in db.parent.iterdir())
    with pytest.raises(StoreError) as info:
        Store(db)
    message = str(info.value)
    assert "\n" not in message and len(message) < 400, message
    for needle in needles:
        assert needle in message, message
    assert digest(db) == before  # nothing written: no WAL switch, no tables
    assert sorted(p.name for p in db.parent.iterdir()) == siblings


def _foreign(path: Path, ddl: str, version: int = 0) -> Path:
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(ddl)
        db.execute(f"PRAGMA user_version = {version}")
        db.commit()
    return path


def test_runs_table_of_another_schema_is_refused_untouched(tmp_path):
    db = _foreign(tmp_path / "runs.sqlite", "CREATE TABLE runs (id TEXT, owner TEXT);")
    _refused(db, "is not a store of this suite", "runs(id, owner)")
    with contextlib.closing(sqlite3.connect(db)) as con:  # no metrics/measures created in it
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_master")]
    assert names == ["runs"]


def test_another_programs_database_is_refused_untouched(tmp_path):
    db = _foreign(tmp_path / "runs.sqlite", "CREATE TABLE photos (path TEXT, taken TEXT);")
    _refused(db, "is not a store of this suite", "photos(path, taken)")


def test_extra_table_in_an_unstamped_file_is_refused(tmp_path):
    db = legacy_store(tmp_path / "runs.sqlite")
    with contextlib.closing(sqlite3.connect(db)) as con:
        con.execute("CREATE TABLE notes (text TEXT)")
        con.commit()
    _refused(db, "is not a store of this suite", "notes(text)")


def test_newer_schema_version_is_refused_untouched(tmp_path):
    db = legacy_store(tmp_path / "runs.sqlite", version=SCHEMA_VERSION + 1)
    _refused(db, f"schema version {SCHEMA_VERSION + 1}", f"up to {SCHEMA_VERSION}")


def test_corrupt_page_mid_file_is_refused_untouched(tmp_path):
    db = legacy_store(tmp_path / "runs.sqlite")
    corrupt_page(db)
    with contextlib.closing(sqlite3.connect(db)) as con:  # the header still reads fine
        assert con.execute("PRAGMA user_version").fetchone()[0] == 0
    _refused(db, "is damaged", "quick_check", "move it aside")


def test_damaged_current_store_is_refused(tmp_path):
    db = tmp_path / "runs.sqlite"
    with Store(db) as store:
        for i in range(N_RUNS):
            start_toy_run(store, f"r{i}")
            for s in range(STEPS):
                store.log_metrics(f"r{i}", s, None, {"a": s, "b": i})
    corrupt_page(db)
    _refused(db, "is damaged")


# ---------------------------------------------------------------------- disk full
def _fill_disk(store: Store) -> None:
    """SQLite's own size cap: the next write that needs a page fails with SQLITE_FULL,
    exactly as on a full file system."""
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")


def test_disk_full_is_reported_as_disk_full_and_nothing_is_half_written(tmp_path):
    db = tmp_path / "runs.sqlite"
    with Store(db) as store:
        start_toy_run(store, "a")
        store.log_metrics("a", 1, None, {"x": 1.0})
        _fill_disk(store)
        big = {f"k{i}": float(i) for i in range(5000)}  # far more than a free page holds
        with pytest.raises(StoreError) as info:
            store.log_metrics("a", 2, None, big)
        message = str(info.value)
        assert "disk full" in message and "database or disk is full" in message, message
        assert "cannot rollback" not in message
        assert store.get_run("a")["last_step"] == 1  # the transaction left nothing behind
        assert store.counts() == {"runs": 1, "metrics": 1}
        store._db.execute("PRAGMA max_page_count = 1073741823")  # space freed: writes work
        store.log_metrics("a", 2, None, big)
        assert store.counts()["metrics"] == 1 + len(big)


def test_sqlite_rolls_back_by_itself_on_a_full_disk(tmp_path):
    """The reason for the fix above: after SQLITE_FULL no transaction is open any more, so a
    plain ROLLBACK raises "cannot rollback" (which the old code reported instead)."""
    con = sqlite3.connect(tmp_path / "x.sqlite", isolation_level=None)
    con.execute("CREATE TABLE t (v TEXT)")
    con.execute(f"PRAGMA max_page_count = {con.execute('PRAGMA page_count').fetchone()[0]}")
    con.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError, match="database or disk is full"):
        con.executemany("INSERT INTO t VALUES (?)", [("x" * 1000,)] * 100)
    assert not con.in_transaction
    with pytest.raises(sqlite3.OperationalError, match="cannot rollback"):
        con.execute("ROLLBACK")
    con.close()


def test_second_opener_finds_the_store_upgraded(tmp_path):
    """Two openers of one legacy store: the second finds it upgraded and changes nothing."""
    db = legacy_store(tmp_path / "runs.sqlite")
    first, second = Store(db), None
    try:
        second = Store(db)
        assert second.counts() == first.counts()
    finally:
        first.close()
        if second is not None:
            second.close()
    assert _user_version(db) == SCHEMA_VERSION
    assert _rows(db)["metrics"] == _rows(legacy_store(tmp_path / "ref.sqlite"))["metrics"]


def test_version_2_store_gets_the_leases_table_and_keeps_its_rows(tmp_path):
    """2 -> 3 (issue 20, finding 1): a store of the previous version, with an interrupted run,
    gains the empty leases table; every row stays as it was."""
    db = tmp_path / "runs.sqlite"
    with Store(db) as store:
        start_toy_run(store, "a")
        store.finish_run("a", "interrupted", error="interrupted")
    with contextlib.closing(sqlite3.connect(db)) as con, con:  # as version 2 wrote it
        con.execute("DROP TABLE leases")
        con.execute("PRAGMA user_version = 2")
    before = _rows(db)
    with Store(db) as store:
        assert store.get_run("a")["status"] == "interrupted"
        assert store.claim_runs(["a"], owner="o", host="h", pid=1, is_dead=bool) == ["a"]
        assert store.lease("a")["owner"] == "o"
        store.release_runs(["a"], "o")
        assert store.lease("a") is None
    assert _user_version(db) == 3
    assert _rows(db) == before
