"""Shared test fixtures. Tests run on CPU in a few seconds each; long ones are marked slow."""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def absolute_sam_data(env: MutableMapping[str, str] = os.environ) -> None:
    """Make a relative ``$SAM_DATA`` in ``env`` absolute, read against this process's cwd.

    The README's test command sets ``SAM_DATA=../shared/data``, relative to the directory the
    user started pytest in; the CLI tests run ``run.py`` from a temporary folder, where the
    same string would name another place."""
    if env.get("SAM_DATA"):
        env["SAM_DATA"] = os.path.abspath(os.path.expanduser(env["SAM_DATA"]))


absolute_sam_data()  # once, at session start, before any test can change the cwd


def pytest_configure(config: pytest.Config) -> None:
    """One marker per domain, from the registry (a new domain, in the repo or from outside it,
    needs no pyproject.toml edit; --strict-markers still refuses a typo)."""
    from domains import domain_names

    for domain in domain_names():
        config.addinivalue_line("markers", f"{domain}: {domain} domain tests")


@pytest.fixture(autouse=True)
def _seed_torch():
    torch.manual_seed(0)
    yield


def run_cli(
    args: list[str],
    tmp_path: Path,
    timeout: float = 300,
    script: str = "run.py",
    env: dict[str, str] | None = None,
):
    """Run ``python runners/<script> ARGS`` in a subprocess, as a user would, from ``tmp_path``.

    One intra-op thread unless the caller says otherwise: CI's 2 cores are shared by the test
    process and the child, and oversubscribed OpenMP threads slow small ops 10-100x.
    """
    import subprocess

    full_env = dict(os.environ)
    absolute_sam_data(full_env)  # also one a test set after session start
    full_env.setdefault("SAM_DATA", str(REPO.parent / "shared" / "data"))
    full_env.setdefault("OMP_NUM_THREADS", "1")
    full_env["HF_HUB_OFFLINE"] = full_env["HF_DATASETS_OFFLINE"] = "1"
    full_env.update(env or {})
    full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, str(REPO / "runners" / script), *args],
        cwd=tmp_path,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# Many tests write small stand-ins for the data sets under their canonical names (a 600-image
# MNIST, a 3-sentence CoNLL-U): they are users' variants, so the canonical-file check
# (domains/data_check.py) is off for tests unless a test turns it on (tests/domains/
# test_data_check.py does, and checks the canonical files in $SAM_DATA pass it).
os.environ.setdefault("SAM_DATA_UNCHECKED", "1")
