"""Store files for the open/upgrade/refusal tests: a store as the code before schema versions
wrote it, and a page of a store overwritten in the middle of the file."""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from pathlib import Path

# The store layout of every results folder written before schema versions (commit 0abe0ce,
# results/store.py ``_SCHEMA``), verbatim: such files have user_version 0.
LEGACY_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    workload TEXT NOT NULL,
    domain TEXT NOT NULL,
    optimizer TEXT NOT NULL,
    base_optimizer TEXT NOT NULL,
    width REAL NOT NULL,
    seed INTEGER NOT NULL,
    rho REAL NOT NULL,
    preset TEXT NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'done', 'diverged', 'failed')),
    n_params INTEGER,
    git_commit TEXT,
    hardware TEXT,
    started_at TEXT,
    ended_at TEXT,
    wall_time_s REAL,
    last_step INTEGER,
    error TEXT,
    summary TEXT
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL REFERENCES runs(id),
    step INTEGER NOT NULL,
    epoch REAL,
    key TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (run_id, step, key)
);
CREATE TABLE IF NOT EXISTS measures (
    run_id TEXT NOT NULL REFERENCES runs(id),
    name TEXT NOT NULL,
    value REAL,
    details TEXT,
    measured_at TEXT,
    PRIMARY KEY (run_id, name)
);
CREATE INDEX IF NOT EXISTS runs_by_workload ON runs (workload, status);
"""
N_RUNS, STEPS = 12, 40  # 12 runs x 40 steps x 2 keys = 960 metric rows


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def legacy_store(path: Path, *, with_measures: bool = True, version: int = 0) -> Path:
    """An unstamped store as the previous code wrote it (WAL, three statuses)."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(LEGACY_SCHEMA)
        if not with_measures:  # stores from before post-training measures
            db.execute("DROP TABLE measures")
        for i in range(N_RUNS):
            status = ("done", "failed", "diverged", "running")[i % 4]
            db.execute(
                "INSERT INTO runs VALUES (?, ?, 'toy', 'synthetic', 'sgd', 'sgd', ?, ?, 0.0, "
                "'quick', '{}', ?, 10, 'abc', 'cpu', 't0', NULL, 1.5, ?, NULL, '{}')",
                (f"r{i}", f"run {i}", 1.0 + i, i, status, STEPS),
            )
            db.executemany(
                "INSERT INTO metrics VALUES (?, ?, ?, ?, ?)",
                [(f"r{i}", s, s / 10, k, s * 0.5 + i) for s in range(STEPS) for k in ("a", "b")],
            )
        if with_measures:
            db.execute("INSERT INTO measures VALUES ('r0', 'lambda_max', 3.5, '{}', 't1')")
        db.execute(f"PRAGMA user_version = {version}")
        db.commit()
    return path


def corrupt_page(db: Path) -> None:
    """Overwrite one b-tree page in the middle of the file; the header (page 1) stays intact."""
    with contextlib.closing(sqlite3.connect(db)) as con:
        page_size = con.execute("PRAGMA page_size").fetchone()[0]
        n_pages = con.execute("PRAGMA page_count").fetchone()[0]
        con.execute("PRAGMA journal_mode=DELETE")  # the WAL folded into the file
    assert n_pages >= 8, n_pages
    data = bytearray(db.read_bytes())
    middle = n_pages // 2
    data[middle * page_size : (middle + 1) * page_size] = bytes([0xA5]) * page_size
    db.write_bytes(bytes(data))
