"""Interrupted writes of tables and figures (results.io.atomic_write) leave the previous file
whole and no temporary file behind. A failed rename is tested in test_report.py; here the
disk fills up halfway through the bytes, or at the fsync, and new files keep normal modes."""

from __future__ import annotations

import errno
import os

import pytest

from results import io as results_io
from results.io import atomic_write


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


class _HalfWritten:
    """A file object that writes half of what it is given, then finds the disk full."""

    def __init__(self, f):
        self.f = f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def write(self, data):
        self.f.write(data[: len(data) // 2])
        self.f.flush()
        _disk_full()


@pytest.mark.parametrize("where", ["write", "fsync"])
@pytest.mark.parametrize("data", ["| table |\n" * 50, b"%PDF-1.4 figure bytes" * 50])
def test_disk_full_mid_write_keeps_the_previous_file(tmp_path, monkeypatch, where, data):
    path = tmp_path / ("fig.pdf" if isinstance(data, bytes) else "summary.md")
    atomic_write(path, "previous")
    if where == "write":
        real_fdopen = os.fdopen
        monkeypatch.setattr(
            results_io.os, "fdopen", lambda fd, *a, **k: _HalfWritten(real_fdopen(fd, *a, **k))
        )
    else:
        monkeypatch.setattr(results_io.os, "fsync", _disk_full)
    with pytest.raises(OSError, match="No space left"):
        atomic_write(path, data)
    monkeypatch.undo()
    assert path.read_text() == "previous"
    assert os.listdir(tmp_path) == [path.name]  # the half-written temporary file is gone


def test_written_files_have_the_usual_permissions(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    path = atomic_write(tmp_path / "summary.md", "x")
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's owner-only 0600
