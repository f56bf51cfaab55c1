"""Interrupted writes of tables and figures leave the previous file intact (write, fsync,
rename), and leave no temporary file behind."""

from __future__ import annotations

import errno
import os

import pytest

from results import atomic
from results.atomic import atomic_path, write_text_atomic


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("where", ["write", "fsync", "replace"])
def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch, where):
    path = tmp_path / "tables" / "summary.md"
    write_text_atomic(path, "old table\n")
    if where == "write":  # the disk fills up halfway through the data

        class HalfFile:
            def __init__(self, f):
                self.f = f

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.f.close()

            def write(self, data):
                self.f.write(data[: len(data) // 2])
                _disk_full()

        real_open = open
        monkeypatch.setattr(
            "builtins.open",
            lambda p, mode="r", *a, **k: (
                HalfFile(real_open(p, mode, *a, **k))
                if "w" in mode and str(p).endswith(".tmp")
                else real_open(p, mode, *a, **k)
            ),
        )
    else:
        monkeypatch.setattr(atomic.os, where, _disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_text_atomic(path, "new table, much longer than the old one\n" * 100)
    monkeypatch.undo()
    assert path.read_text() == "old table\n"
    assert os.listdir(path.parent) == ["summary.md"]  # no temporary file left


def test_a_writer_that_crashes_inside_the_block_changes_nothing(tmp_path):
    path = tmp_path / "fig.pdf"
    path.write_bytes(b"%PDF old figure")
    with pytest.raises(RuntimeError, match="plot failed"), atomic_path(path) as tmp:
        tmp.write_bytes(b"%PDF half a fig")
        raise RuntimeError("plot failed")
    assert path.read_bytes() == b"%PDF old figure"
    assert os.listdir(tmp_path) == ["fig.pdf"]


def test_success_replaces_and_keeps_normal_permissions(tmp_path):
    path = tmp_path / "summary.md"
    write_text_atomic(path, "v1")
    write_text_atomic(path, "v2 ünïcode")
    assert path.read_text(encoding="utf-8") == "v2 ünïcode"
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    assert os.listdir(tmp_path) == ["summary.md"]


def test_report_keeps_the_previous_summary_when_the_disk_is_full(tmp_path, monkeypatch, capsys):
    """runners/report.py writes its table through write_text_atomic."""
    from results.store import Store
    from runners import report
    from tests.results.test_store_tables import _add

    with Store(tmp_path / "runs.sqlite") as store:
        _add(store, "b", optimizer="sgd", width=1, seed=0, rho=0, val=1.1, test=1.1)
    summary = tmp_path / "tables" / "summary.md"
    summary.parent.mkdir()
    summary.write_text("previous summary")
    monkeypatch.setattr(atomic.os, "fsync", _disk_full)
    assert report.main(["--results", str(tmp_path)]) == 0  # the table is still printed
    assert "tables not written" in capsys.readouterr().err
    assert summary.read_text() == "previous summary"
    assert os.listdir(summary.parent) == ["summary.md"]
