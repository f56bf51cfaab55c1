"""A relative ``--data-root`` / ``$SAM_DATA`` (the README's ``SAM_DATA=../shared/data``) names
a folder relative to the directory the user started in, whatever cwd a child process has."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from domains import resolve_data_root
from tests.conftest import run_cli


def test_relative_paths_resolve_against_the_start_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SAM_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "xdg")
    assert resolve_data_root(None) == tmp_path / "xdg" / "sam-overparam"
    monkeypatch.setenv("SAM_DATA", "../shared/data")
    assert resolve_data_root(None) == tmp_path.parent / "shared" / "data"
    assert resolve_data_root("d") == tmp_path / "d"  # --data-root wins over $SAM_DATA
    assert resolve_data_root("/abs/d") == Path("/abs/d")
    assert resolve_data_root("~/d") == Path.home() / "d"


def test_the_session_hands_children_an_absolute_sam_data():
    if os.environ.get("SAM_DATA"):  # tests/conftest.py made it absolute at session start
        assert os.path.isabs(os.environ["SAM_DATA"])


def test_cli_run_from_another_cwd_with_a_relative_sam_data(tmp_path, monkeypatch):
    """The README's test command: pytest started beside ``../shared``, ``run.py`` in a temp
    folder. The run must read the data the relative path names from the start directory."""
    real = Path(os.environ.get("SAM_DATA") or "/nonexistent") / "MNIST" / "raw"
    if not real.is_dir():
        pytest.skip("needs the held MNIST files under $SAM_DATA")
    start, elsewhere = tmp_path / "start", tmp_path / "else" / "where" / "deeper"
    start.mkdir(), elsewhere.mkdir(parents=True)  # deeper: the "../" chain lands elsewhere
    monkeypatch.chdir(start)
    monkeypatch.setenv("SAM_DATA", os.path.relpath(real.parent.parent, start))
    assert not (elsewhere / os.environ["SAM_DATA"] / "MNIST").exists()  # wrong from there
    args = ["--workload", "mnist-mlp", "--preset", "smoke", "--optimizer", "base"]
    proc = run_cli([*args, "--seeds", "0", "--results", str(tmp_path / "r")], elsewhere)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with sqlite3.connect(tmp_path / "r" / "runs.sqlite") as db:
        assert db.execute("SELECT workload, status FROM runs").fetchall() == [("mnist-mlp", "done")]
