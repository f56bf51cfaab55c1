"""Run leases: a run is claimed in the store before it trains, so that two or more invocations
(``run.py``, ``sweep.py`` drivers, their workers, other machines) sharing one results folder
train each run once (issue 20, finding 1).

A lease is a row of the store's ``leases`` table (results/store.py): owner
(``host:pid:token``), host, pid and a heartbeat time renewed every ``HEARTBEAT_S`` seconds by a
daemon thread of the holding process. Another process skips a run whose owner is alive and
takes the run over (resuming it from its checkpoint) when the owner is dead: its heartbeat is
older than ``STALE_S`` seconds, or it ran on this host and its process is gone (a kill -9, a
crashed sweep worker). The lease is released when training ends, however it ends.

    @leased
    def train_run(workload, cfg, store, ex) -> RunOutcome: ...

A held run comes back as a ``skipped`` RunOutcome that names its holder. Leases are
re-entrant within a process: ``train_seeds`` holding a group may call ``train_run`` on one of
its seeds.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from results.store import Store
from runners.engine.records import RunOutcome

__all__ = [
    "HEARTBEAT_S",
    "STALE_S",
    "hold_lease",
    "leased",
    "owner_is_dead",
    "held_by_other",
    "process_owner",
]

HEARTBEAT_S = 5.0  # how often a holder renews its leases
STALE_S = 60.0  # a heartbeat older than this: the holder is gone (another host, or hung)

_lock = threading.Lock()
_held: dict[str, Counter[str]] = {}  # store path -> run id -> nesting depth in this process
_owner: tuple[int, str] | None = None  # (pid, owner id); a forked child gets its own
_beater: threading.Thread | None = None


def process_owner() -> str:
    """This process's owner id, ``host:pid:token`` (the token tells a reused pid apart)."""
    global _owner
    if _owner is None or _owner[0] != os.getpid():
        _owner = (os.getpid(), f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}")
    return _owner[1]


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host and is not a zombie (killed, unreaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (macOS): kill(0) said it exists


def owner_is_dead(lease: dict[str, Any], now: float | None = None) -> bool:
    """A lease's holder is gone: its heartbeat is stale, or it is a process of this host that
    no longer exists."""
    now = time.time() if now is None else now
    if now - float(lease["heartbeat"]) > STALE_S:
        return True
    return lease["host"] == socket.gethostname() and not _pid_alive(int(lease["pid"]))


def held_by_other(store: Store, run_id: str) -> dict[str, Any] | None:
    """The lease on ``run_id`` if another live process holds it (its run must not be touched)."""
    lease = store.lease(run_id)
    if lease is None or lease["owner"] == process_owner() or owner_is_dead(lease):
        return None
    return lease


def _beat_forever() -> None:
    """The heartbeat thread: renew this process's leases in every store it holds some in,
    through its own connection (SQLite connections stay in their thread)."""
    stores: dict[str, Store] = {}
    while True:
        time.sleep(HEARTBEAT_S)
        with _lock:
            paths = [p for p, runs in _held.items() if runs]
        for path in list(stores):
            if path not in paths:
                stores.pop(path).close()
        for path in paths:
            try:
                if path not in stores:
                    stores[path] = Store(path)
                stores[path].heartbeat(process_owner())
            except Exception:  # a busy or vanished store: the next beat tries again
                stores.pop(path, None)


def _start_heartbeat() -> None:
    global _beater
    with _lock:
        if _beater is None or not _beater.is_alive():
            _beater = threading.Thread(target=_beat_forever, name="lease-heartbeat", daemon=True)
            _beater.start()


@contextmanager
def hold_lease(store: Store, run_ids: Sequence[str]) -> Iterator[list[str]]:
    """Claim ``run_ids`` for this process; yields the ids it holds (a subset: runs held by a
    live other process are left out). Heartbeats run until the block ends; then the claims
    this block made are released."""
    path = str(Path(store.path).resolve())
    owner = process_owner()
    with _lock:
        mine = _held.setdefault(path, Counter())
        already = [r for r in run_ids if mine[r] > 0]
    fresh = [r for r in run_ids if r not in already]
    claimed = store.claim_runs(
        fresh,
        owner=owner,
        host=socket.gethostname(),
        pid=os.getpid(),
        is_dead=owner_is_dead,
    )
    held = [r for r in run_ids if r in already or r in claimed]
    with _lock:
        for r in held:
            mine[r] += 1
    _start_heartbeat()
    try:
        yield held
    finally:
        with _lock:
            for r in held:
                mine[r] -= 1
            done = [r for r in held if mine[r] == 0]
            for r in done:
                del mine[r]
        if done:
            store.release_runs(done, owner)


F = TypeVar("F", bound=Callable[..., Any])


def leased(train: F) -> F:
    """Decorate ``train(workload, cfg_or_cfgs, store, ex)`` (``train_run``, ``train_seeds``):
    it trains only the runs this process could claim; the others come back ``skipped``."""

    @functools.wraps(train)
    def wrapper(workload: Any, cfgs: Any, store: Store, ex: Any) -> Any:
        many = isinstance(cfgs, (list, tuple))
        group = list(cfgs) if many else [cfgs]
        with hold_lease(store, [c.run_id for c in group]) as held:
            mine = [c for c in group if c.run_id in held]
            trained: dict[str, Any] = {}
            if mine:
                outs = (
                    train(workload, mine, store, ex)
                    if many
                    else [train(workload, *mine, store, ex)]
                )
                trained = {c.run_id: out for c, out in zip(mine, outs)}
        for c in group:
            if c.run_id not in trained:
                lease = store.lease(c.run_id)
                who = f"{lease['host']} pid {lease['pid']}" if lease else "another process"
                trained[c.run_id] = RunOutcome(
                    c.run_id, "skipped", {}, f"being trained by {who}; skipped"
                )
        outcomes = [trained[c.run_id] for c in group]
        return outcomes if many else outcomes[0]

    return wrapper  # type: ignore[return-value]
