"""Fixtures of the language-domain tests: the held data folder (or a skip) and a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def data_root() -> Path:
    """$SAM_DATA, or a skip: the real-data tests need the held copies of the data sets."""
    if not os.environ.get("SAM_DATA"):
        pytest.skip("SAM_DATA is not set: real-data test skipped")
    return Path(os.environ["SAM_DATA"])


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Vocabulary caches go to a per-session temporary folder, never the user's cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))


def run_cli(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python runners/run.py ARGS`` in a subprocess, as a user would run it."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env["HF_HUB_OFFLINE"] = env["HF_DATASETS_OFFLINE"] = "1"
    return subprocess.run(
        [sys.executable, str(REPO / "runners" / "run.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
