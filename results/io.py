"""Atomic file writes: every table and figure goes through ``atomic_write``.

The bytes go to a temporary file in the destination folder, which is then renamed over the
destination (``os.replace``, atomic on POSIX and Windows within one file system). A crash, a
full disk or an exception mid-write leaves the previous file whole and no temporary behind.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write", "DEFAULT_RESULTS"]

# Where runs are stored without --results: ./runs (ignored by git), outside the results
# package, which holds code and the committed quick results (results/quick/). Defined here,
# not in runners.engine.cli, so that report.py stays free of torch.
DEFAULT_RESULTS = Path("runs")


def atomic_write(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` all at once; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a table is as readable as any file
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())  # the rename must not land before the bytes do
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask
