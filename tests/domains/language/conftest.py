"""Fixtures of the language-domain tests: the held data folder (or a skip) and a CLI runner."""

from __future__ import annotations

import os
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
