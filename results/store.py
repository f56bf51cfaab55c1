"""The results store: one SQLite file (WAL), one row per run keyed by its config hash.

Tables:
  runs     id (config hash), name, workload, domain, optimizer, base_optimizer, width, seed, rho,
           preset, config (JSON), status (running | done | diverged | failed | interrupted),
           n_params, git_commit, hardware, started_at, ended_at, wall_time_s, last_step, error,
           summary (JSON)
  metrics  long format (run_id, step, epoch, key, value); (run_id, step, key) is unique, so a
           resumed run rewrites rather than duplicates the rows after its checkpoint.
  measures one value per (run_id, name) measured after training (lambda_max, sharpness, ...),
           with its settings as details (JSON); measuring again replaces the row.
  leases   one row per run being trained right now: run_id, owner (host:pid:token), host,
           pid, heartbeat (unix time), claimed_at. Claimed before training and deleted after,
           so two invocations on one results folder never train the same run (issue 20,
           finding 1; runners/engine/lease.py holds and heartbeats them).

The schema version is the file's ``PRAGMA user_version`` (``SCHEMA_VERSION``). Opening a store
first runs SQLite's ``quick_check`` and reads the version and tables, and only then writes: a
damaged file, a newer schema, or another program's database is refused with ``StoreError``
and left byte for byte as it was (issue 20, finding 5). Older stores of this suite are
upgraded in one transaction: version 0 (unstamped, from before versions existed) with this
suite's tables counts as version 1; version 1 -> 2 adds the ``interrupted`` status; 2 -> 3
adds the ``leases`` table.
Imports neither torch nor domains: tables and figures are built from this file alone.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["Store", "STATUSES", "StoreError", "SCHEMA_VERSION"]

STATUSES = ("running", "done", "diverged", "failed", "interrupted")
SCHEMA_VERSION = 3

_RUNS_TABLE = """
CREATE TABLE IF NOT EXISTS {name} (
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
    status TEXT NOT NULL CHECK (status IN ({statuses})),
    n_params INTEGER,
    git_commit TEXT,
    hardware TEXT,
    started_at TEXT,
    ended_at TEXT,
    wall_time_s REAL,
    last_step INTEGER,
    error TEXT,
    summary TEXT
)"""

_SCHEMA = [
    _RUNS_TABLE.format(name="runs", statuses=", ".join(f"'{s}'" for s in STATUSES)),
    """CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL REFERENCES runs(id),
    step INTEGER NOT NULL,
    epoch REAL,
    key TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (run_id, step, key)
)""",
    """CREATE TABLE IF NOT EXISTS measures (
    run_id TEXT NOT NULL REFERENCES runs(id),
    name TEXT NOT NULL,
    value REAL,
    details TEXT,
    measured_at TEXT,
    PRIMARY KEY (run_id, name)
)""",
    "CREATE INDEX IF NOT EXISTS runs_by_workload ON runs (workload, status)",
]
_LEASES_TABLE = """CREATE TABLE IF NOT EXISTS leases (
    run_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    heartbeat REAL NOT NULL,
    claimed_at TEXT
)"""

# The columns of each table (versions 1 and 2 differ only in the status CHECK constraint).
_COLUMNS = {
    "runs": (
        "id", "name", "workload", "domain", "optimizer", "base_optimizer", "width", "seed",
        "rho", "preset", "config", "status", "n_params", "git_commit", "hardware",
        "started_at", "ended_at", "wall_time_s", "last_step", "error", "summary",
    ),
    "metrics": ("run_id", "step", "epoch", "key", "value"),
    "measures": ("run_id", "name", "value", "details", "measured_at"),
    "leases": ("run_id", "owner", "host", "pid", "heartbeat", "claimed_at"),
}  # fmt: skip
_SQLITE_FULL = 13  # "database or disk is full"


class StoreError(RuntimeError):
    """The store cannot be opened or written (path, permissions, corruption, disk full)."""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _short(text: object, limit: int = 200) -> str:
    """One line of at most ``limit`` characters (SQLite's messages can hold file content)."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _add_interrupted_status(db: sqlite3.Connection) -> None:
    """Version 1 -> 2: a CHECK constraint cannot be altered, so the runs table is rebuilt
    (SQLite's documented rename-copy-drop procedure; foreign keys are not enforced)."""
    columns = ", ".join(_COLUMNS["runs"])
    statuses = ", ".join(f"'{s}'" for s in STATUSES)
    db.execute(_RUNS_TABLE.format(name="runs_v2", statuses=statuses))
    db.execute(f"INSERT INTO runs_v2 ({columns}) SELECT {columns} FROM runs")
    db.execute("DROP TABLE runs")  # drops its index too
    db.execute("ALTER TABLE runs_v2 RENAME TO runs")
    db.execute("CREATE INDEX IF NOT EXISTS runs_by_workload ON runs (workload, status)")


def _add_leases(db: sqlite3.Connection) -> None:
    """Version 2 -> 3: the table of runs being trained now (no run holds a lease yet)."""
    db.execute(_LEASES_TABLE)


# _UPGRADES[v] takes a store from version v to v + 1, inside the caller's transaction.
_UPGRADES: dict[int, Callable[[sqlite3.Connection], None]] = {
    1: _add_interrupted_status,
    2: _add_leases,
}


class Store:
    """``Store("results/runs.sqlite")``; safe for several processes at once (WAL + busy wait)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open results store {self.path}: {_short(exc)}") from None
        try:
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA busy_timeout=60000")
            version = self._check()  # reads only: a refused file is left as it was
            self._db.execute("PRAGMA journal_mode=WAL")
            if version != SCHEMA_VERSION:
                self._upgrade()
        except StoreError:
            self._db.close()
            raise
        except (OSError, sqlite3.Error) as exc:
            self._db.close()
            raise StoreError(f"cannot open results store {self.path}: {_short(exc)}") from None

    def _tables(self) -> dict[str, tuple[str, ...]]:
        names = [
            r[0]
            for r in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if not r[0].startswith("sqlite_")
        ]
        return {
            n: tuple(r[1] for r in self._db.execute(f'PRAGMA table_info("{n}")')) for n in names
        }

    def _check(self) -> int:
        """The file's schema version, after SQLite's quick integrity check; StoreError if the
        file is damaged or is not (or not yet) a store this code can read."""
        try:
            problems = [r[0] for r in self._db.execute("PRAGMA quick_check(3)")]
        except sqlite3.DatabaseError as exc:
            if "not a database" in str(exc):
                raise
            problems = [str(exc)]
        if problems != ["ok"]:
            raise StoreError(
                f"results store {self.path} is damaged (sqlite quick_check: "
                f"{_short('; '.join(problems))}); move it aside or restore a copy"
            )
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION or version < 0:
            raise StoreError(
                f"results store {self.path} has schema version {version}; this code reads "
                f"versions up to {SCHEMA_VERSION} (written by a newer version of the suite?)"
            )
        tables = self._tables()
        if version == 0 and not tables:
            return 0  # a new, empty file
        wrong = sorted(
            name
            for name, columns in tables.items()
            if _COLUMNS.get(name, ()) != columns and (version == 0 or name in _COLUMNS)
        )
        if "runs" not in tables or wrong:
            found = ", ".join(f"{n}({', '.join(tables[n])})" for n in sorted(tables))
            raise StoreError(
                f"results store {self.path} is not a store of this suite (schema version "
                f"{version}; tables {_short(found, 160)}); use another --results folder"
            )
        return version

    def _upgrade(self) -> None:
        """Create a new store's tables or upgrade an old one to ``SCHEMA_VERSION``, in one
        transaction; another process may have done it first, so the version is read again."""
        with self._transaction():
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version == SCHEMA_VERSION:
                return
            fresh = "runs" not in self._tables()
            for statement in _SCHEMA:  # an unstamped store may predate the measures table
                self._db.execute(statement)
            if fresh:  # older stores get it from their upgrade step
                self._db.execute(_LEASES_TABLE)
            version = SCHEMA_VERSION if fresh else max(version, 1)
            while version < SCHEMA_VERSION:
                _UPGRADES[version](self._db)
                version += 1
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT. BEGIN IMMEDIATE takes the write lock up front: no
        deadlock upgrade under contention. SQLite rolls a transaction back by itself on some
        errors (disk full): a second ROLLBACK would fail with "no transaction is active" and
        hide the cause (issue 20, finding 6), so it is issued only while one is open."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            yield
            self._db.execute("COMMIT")
        except BaseException as exc:
            if self._db.in_transaction:
                try:
                    self._db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # the original error is the one to report
            if isinstance(exc, sqlite3.Error) and (
                getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL or "disk is full" in str(exc)
            ):
                raise StoreError(
                    f"results store {self.path}: disk full ({_short(exc)}); nothing of this "
                    "write was stored: free space and rerun to resume"
                ) from None
            raise

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, sql: str, params: Iterable[Any] = ()) -> None:
        with self._transaction():
            self._db.execute(sql, tuple(params))

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
            raise ValueError(
                f"finish status must be done, diverged, failed or interrupted, got {status!r}"
            )
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
        with self._transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO metrics (run_id, step, epoch, key, value) VALUES (?, ?, ?, ?, ?)",
                rows,
            )
            self._db.execute("UPDATE runs SET last_step = ? WHERE id = ?", (step, run_id))

    def delete_metrics_after(self, run_id: str, step: int) -> None:
        """Drop rows logged after ``step`` (a resumed run recomputes them)."""
        self._write("DELETE FROM metrics WHERE run_id = ? AND step > ?", (run_id, step))

    def metrics(self, run_id: str, key: str | None = None) -> list[dict[str, Any]]:
        sql, params = "SELECT step, epoch, key, value FROM metrics WHERE run_id = ?", [run_id]
        if key is not None:
            sql, params = sql + " AND key = ?", params + [key]
        return [dict(r) for r in self._db.execute(sql + " ORDER BY step, key", params)]

    # ------------------------------------------------------------------ leases
    def claim_runs(
        self,
        run_ids: Iterable[str],
        *,
        owner: str,
        host: str,
        pid: int,
        is_dead: Callable[[dict[str, Any]], bool],
    ) -> list[str]:
        """Claim every run of ``run_ids`` that no live owner holds, in one transaction; returns
        the ids claimed (those already ours included). ``is_dead(lease_row)`` says whether a
        holder is gone (stale heartbeat, or its process no longer exists); its lease is taken
        over. Runs held by a live other owner are left out."""
        claimed: list[str] = []
        now = time.time()
        with self._transaction():
            for run_id in run_ids:
                row = self._db.execute("SELECT * FROM leases WHERE run_id = ?", (run_id,))
                held = row.fetchone()
                if held is not None and held["owner"] != owner and not is_dead(dict(held)):
                    continue
                self._db.execute(
                    "INSERT OR REPLACE INTO leases (run_id, owner, host, pid, heartbeat, "
                    "claimed_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (run_id, owner, host, pid, now, _now()),
                )
                claimed.append(run_id)
        return claimed

    def lease(self, run_id: str) -> dict[str, Any] | None:
        """The lease on ``run_id`` (owner, host, pid, heartbeat, claimed_at), or None."""
        row = self._db.execute("SELECT * FROM leases WHERE run_id = ?", (run_id,)).fetchone()
        return dict(row) if row else None

    def heartbeat(self, owner: str) -> None:
        """Renew every lease ``owner`` holds (proof that it still trains them)."""
        self._write("UPDATE leases SET heartbeat = ? WHERE owner = ?", (time.time(), owner))

    def release_runs(self, run_ids: Iterable[str], owner: str) -> None:
        """Drop ``owner``'s leases on ``run_ids`` (a lease taken over by another is kept)."""
        with self._transaction():
            self._db.executemany(
                "DELETE FROM leases WHERE run_id = ? AND owner = ?",
                [(run_id, owner) for run_id in run_ids],
            )

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
        with self._transaction():
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
