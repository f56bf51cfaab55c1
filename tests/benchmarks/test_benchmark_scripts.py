"""The issue-21 benchmark scripts run and print what they promise (no timing assertions:
the machine that runs the tests is not the one the numbers are about)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.run(
        [*args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def _ratio_rows(out: str) -> dict[tuple[str, str], float]:
    rows = re.findall(r"^(\S+)\s+(base|sam)\s+\S+x\s+[\d.]+\s+[\d.]+\s+([\d.]+)$", out, re.M)
    return {(name, opt): float(ratio) for name, opt, ratio in rows}


def test_loop_overhead_quick_prints_a_ratio_per_optimizer():
    res = _run(
        sys.executable,
        "benchmarks/loop_overhead.py",
        "--quick",
        "--workloads",
        "synthetic-regression",
    )
    assert res.returncode == 0, res.stderr[-2000:]
    ratios = _ratio_rows(res.stdout)
    assert set(ratios) == {("synthetic-regression", "base"), ("synthetic-regression", "sam")}
    assert all(r > 0 for r in ratios.values())


@pytest.mark.slow
def test_loop_overhead_quick_covers_the_three_workloads():
    res = _run(sys.executable, "benchmarks/loop_overhead.py", "--quick", "--optimizers", "sam")
    assert res.returncode == 0, res.stderr[-2000:]
    names = {name for name, _ in _ratio_rows(res.stdout)}
    assert names == {"synthetic-regression", "mnist-mlp", "planetoid-cora"}
