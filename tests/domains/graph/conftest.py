"""Graph-domain fixtures: a per-session writable cache, and the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def graph_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """XDG cache root shared by this session's graph tests (data sets are built once)."""
    return tmp_path_factory.mktemp("xdg-cache")


@pytest.fixture
def shared_data() -> Path:
    """The held data sets ($SAM_DATA); tests that need them skip without it."""
    root = os.environ.get("SAM_DATA")
    if not root or not Path(root, "moleculenet").is_dir():
        pytest.skip("needs the held data sets: set SAM_DATA (e.g. /work/shared/data)")
    return Path(root)


@pytest.fixture
def cli(tmp_path: Path, graph_cache: Path, shared_data: Path) -> Callable[..., Any]:
    """``cli(args)``: ``python runners/run.py ARGS`` in a subprocess, as a user would run it,
    on the held data, with the session cache and one intra-op thread (CPUs are shared, and
    oversubscribed threads make sparse scatter ops 10-100x slower)."""

    def run(args: list[str]) -> subprocess.CompletedProcess:
        env = {"SAM_DATA": str(shared_data), "XDG_CACHE_HOME": str(graph_cache)}
        return run_cli(args, tmp_path, env=env)

    return run


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Graph tests marked ``slow`` (the full 41k-molecule rebuild) run only when asked for
    with ``-m slow`` (tox -e slow), so a plain ``pytest tests/domains/graph`` stays < 1 min."""
    if "slow" in (config.getoption("-m") or "") and "not slow" not in config.getoption("-m"):
        return
    here = Path(__file__).parent
    skip = pytest.mark.skip(reason="slow: run with -m slow")
    for item in items:
        if "slow" in item.keywords and here in Path(item.fspath).parents:
            item.add_marker(skip)
