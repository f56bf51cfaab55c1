"""The results store: one SQLite file (WAL), one row per run keyed by its config hash.

Tables:
  runs     id (config hash), name, workload, domain, optimizer, base_optimizer, width, seed, rho,
           preset, config (JSON), status (running | done | diverged | failed), n_params,
           git_commit, hardware, started_at, ended_at, wall_time_s, last_step, error, summary (JSON)
  metrics  long format (run_id, step, epoch, key, value); (run_id, step, key) is unique, so a
           resumed run rewrites rather than duplicates the rows after its checkpoint.
  measures one value per (run_id, name) measured after training (lambda_max, sharpness, ...),
           with its settings as details (JSON); measuring again replaces the row.
Imports neither torch nor domains: tables and figures are built from this file alone.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["Store", "STATUSES", "StoreError"]

STATUSES = ("running", "done", "diverged", "failed")

_SCHEMA = """
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


class StoreError(RuntimeError):
    """The store cannot be opened or written (path, permissions, corruption)."""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class Store:
    """``Store("results/runs.sqlite")``; safe for several processes at once (WAL + busy wait)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=60000")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open results store {self.path}: {exc}") from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, sql: str, params: Iterable[Any] = ()) -> None:
        # BEGIN IMMEDIATE takes the write lock up front: no deadlock upgrade under contention.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute(sql, tuple(params))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------------ runs
    def get_run(self, run_id: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return _decode(row) if row else None

    def start_run(
        self,
        run_id: str,
        *,
        name: str,
        workload: str,
        domain: str,
        optimizer: str,
        base_optimizer: str,
        width: float,
        seed: int,
        rho: float,
        preset: str,
        config: Mapping[str, Any],
        n_params: int | None,
        git_commit: str,
        hardware: str,
    ) -> None:
        """Insert the run as ``running``, or mark an existing (killed / failed) row running again."""
        self._write(
            """INSERT INTO runs (id, name, workload, domain, optimizer, base_optimizer, width, seed,
                   rho, preset, config, status, n_params, git_commit, hardware, started_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?)
               ON CONFLICT(id) DO UPDATE SET status = 'running', error = NULL, ended_at = NULL,
                   git_commit = excluded.git_commit, hardware = excluded.hardware""",
            (
                run_id,
                name,
                workload,
                domain,
                optimizer,
                base_optimizer,
                width,
                seed,
                rho,
                preset,
                json.dumps(config, sort_keys=True),
                n_params,
                git_commit,
                hardware,
                _now(),
            ),
        )

    def finish_run(
        self,
        run_id: str,
        status: str,
        *,
        summary: Mapping[str, Any] | None = None,
        error: str | None = None,
        wall_time_s: float | None = None,
        last_step: int | None = None,
    ) -> None:
        if status not in STATUSES or status == "running":
            raise ValueError(f"finish status must be done, diverged or failed, got {status!r}")
        self._write(
            """UPDATE runs SET status = ?, summary = ?, error = ?, wall_time_s = ?,
                   last_step = ?, ended_at = ? WHERE id = ?""",
            (
                status,
                json.dumps(summary or {}, sort_keys=True),
                error,
                wall_time_s,
                last_step,
                _now(),
                run_id,
            ),
        )

    def runs(
        self, *, workload: str | None = None, status: str | None = None
    ) -> list[dict[str, Any]]:
        order = "workload, width, optimizer, rho, seed"
        return self._select("runs", order, workload=workload, status=status)

    # ------------------------------------------------------------------ metrics
    def log_metrics(
        self, run_id: str, step: int, epoch: float | None, metrics: Mapping[str, float]
    ) -> None:
        rows = [(run_id, step, epoch, k, float(v)) for k, v in metrics.items()]
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(
                "INSERT OR REPLACE INTO metrics (run_id, step, epoch, key, value) VALUES (?, ?, ?, ?, ?)",
                rows,
            )
            self._db.execute("UPDATE runs SET last_step = ? WHERE id = ?", (step, run_id))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def delete_metrics_after(self, run_id: str, step: int) -> None:
        """Drop rows logged after ``step`` (a resumed run recomputes them)."""
        self._write("DELETE FROM metrics WHERE run_id = ? AND step > ?", (run_id, step))

    def metrics(self, run_id: str, key: str | None = None) -> list[dict[str, Any]]:
        sql, params = "SELECT step, epoch, key, value FROM metrics WHERE run_id = ?", [run_id]
        if key is not None:
            sql, params = sql + " AND key = ?", params + [key]
        return [dict(r) for r in self._db.execute(sql + " ORDER BY step, key", params)]

    # ------------------------------------------------------------------ measures
    def log_measure(
        self, run_id: str, name: str, value: float, details: Mapping[str, Any] | None = None
    ) -> None:
        """Store (or replace) one post-training measure of a run."""
        self._write(
            """INSERT OR REPLACE INTO measures (run_id, name, value, details, measured_at)
               VALUES (?, ?, ?, ?, ?)""",
            (run_id, name, float(value), json.dumps(details or {}, sort_keys=True), _now()),
        )

    def measures(self, run_id: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
        return self._select("measures", "run_id, name", run_id=run_id, name=name)

    def _select(self, table: str, order: str, **equal: Any) -> list[dict[str, Any]]:
        """Rows of ``table`` whose columns equal the given values (None: no filter)."""
        kept = {column: v for column, v in equal.items() if v is not None}
        where = " AND ".join(f"{column} = ?" for column in kept) or "1=1"
        rows = self._db.execute(
            f"SELECT * FROM {table} WHERE {where} ORDER BY {order}", list(kept.values())
        )
        return [_decode(r) for r in rows]

    def import_run(self, run: Mapping[str, Any], metrics: Iterable[Mapping[str, Any]]) -> None:
        """Copy one run from another store (``get_run`` and ``metrics`` rows of, e.g., a Ray
        task's private store): the row replaces any row with its id and its metric rows
        replace that run's, in one transaction, so importing twice changes nothing."""
        columns = [r[1] for r in self._db.execute("PRAGMA table_info(runs)")]
        unknown = sorted(set(run) - set(columns))
        if unknown:
            raise ValueError(f"run row has unknown columns {unknown}; expected {columns}")
        row = {
            k: json.dumps(v, sort_keys=True) if k in ("config", "summary") and v is not None else v
            for k, v in run.items()
        }
        names = list(row)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute(
                f"INSERT OR REPLACE INTO runs ({', '.join(names)}) "
                f"VALUES ({', '.join('?' for _ in names)})",
                [row[k] for k in names],
            )
            self._db.execute("DELETE FROM metrics WHERE run_id = ?", (run["id"],))
            self._db.executemany(
                "INSERT INTO metrics (run_id, step, epoch, key, value) VALUES (?, ?, ?, ?, ?)",
                [(run["id"], m["step"], m["epoch"], m["key"], m["value"]) for m in metrics],
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def counts(self) -> dict[str, int]:
        """Row counts, for tests and sanity checks."""
        return {
            t: self._db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in ("runs", "metrics")
        }


def _decode(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    for k in ("config", "summary", "details"):
        if out.get(k):
            out[k] = json.loads(out[k])
    return out
