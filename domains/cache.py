"""Cache entries built once, safely, when several processes want the same one at once.

A sweep's workers start together on an empty cache and all ask for the same decoded data set.
``build_once`` lets one of them build it while the others wait on a file lock
(``<entry>.lock``, ``fcntl.flock``: released by the kernel even if the builder is killed), in
a private staging folder with a unique name (pid + random), published with one atomic
``os.replace``; the waiters then find the finished entry. A reader never sees half an entry,
and a killed builder leaves only its staging folder behind, removed by the next builder (who
holds the lock, so no other staging folder of that entry can be live).
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

__all__ = ["build_once"]


def build_once(
    target: Path,
    build: Callable[[Path], Path],
    ready: Callable[[Path], bool] = Path.exists,
) -> bool:
    """Make sure the cache entry ``target`` (a file or a folder) exists; True if this call
    built it.

    ``build(staging)`` gets an empty private folder next to ``target``, writes the entry
    anywhere inside it and returns that path, which is renamed onto ``target``. ``ready``
    says whether an existing ``target`` is complete (default: it exists); one that is not is
    removed and built again. Concurrent callers on the same ``target`` build it once.
    """
    target = Path(target)
    if ready(target):
        return False  # the common case: no lock taken
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(target.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # waits while another process builds
        try:
            if ready(target):
                return False  # built by the process we waited for
            _remove(target)  # an incomplete entry (older code, or a hand-made partial copy)
            for stale in target.parent.glob(f".{target.name}.tmp-*"):
                _remove(stale)  # left by a killed builder: we hold the lock, none is live
            staging = target.with_name(f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
            staging.mkdir()
            try:
                os.replace(build(staging), target)
            finally:
                _remove(staging)
            return True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()
