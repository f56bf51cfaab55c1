"""Shared test fixtures. Tests run on CPU in a few seconds each; long ones are marked slow."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _deterministic_threads():
    torch.manual_seed(0)
    yield


def run_cli(args: list[str], tmp_path: Path, timeout: float = 300, script: str = "run.py"):
    """Run ``python runners/<script> ARGS`` in a subprocess, as a user would."""
    import subprocess

    env = dict(os.environ)
    env.setdefault("SAM_DATA", str(REPO.parent / "shared" / "data"))
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, str(REPO / "runners" / script), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
