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


def test_time_outside_steps_prints_both_evaluation_modes_side_by_side():
    res = _run(
        sys.executable,
        "benchmarks/time_outside_steps.py",
        "--workloads",
        "synthetic-regression",
        "--compare-test-every-epoch",
        "--num_epochs=2",  # replaces the configuration's 5 epochs
    )
    assert res.returncode == 0, res.stderr[-2000:]
    rows = re.findall(r"^(synthetic-regression.*?)\s+(?:[\d.]+s\s+){8}([\d.]+)%", res.stdout, re.M)
    assert [name.strip() for name, _ in rows] == [
        "synthetic-regression",
        "synthetic-regression (test every epoch)",
    ]
    assert all(0 < float(share) < 100 for _, share in rows)


def test_time_outside_steps_overrides_replace_the_configured_value():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from time_outside_steps import _with
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    args = ["--width", "10x", "--num_epochs=5", "--train_eval_size=2048"]
    assert _with(args, ["--num_epochs=100"]) == [
        "--width",
        "10x",
        "--train_eval_size=2048",
        "--num_epochs=100",
    ]
    assert _with(args, ["--checkpoint-every", "60"]) == args + ["--checkpoint-every", "60"]


def test_time_outside_steps_lazy_imports_name_configured_workloads_and_real_modules():
    """The imports moved into the imports phase exist (a renamed module would otherwise fail
    the benchmark only when that workload is measured)."""
    import importlib

    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from time_outside_steps import CONFIGS, LAZY_IMPORTS
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    assert set(LAZY_IMPORTS) <= set(CONFIGS)
    for modules in LAZY_IMPORTS.values():
        for module in modules:
            importlib.import_module(module)


def test_gpu_check_dry_run_lists_the_four_steps_within_eight_minutes():
    res = _run("bash", "benchmarks/gpu_check.sh", "--dry-run", timeout=30)
    assert res.returncode == 0, res.stderr
    steps = re.findall(r"^\s+\d\. .*predicted\s+(\d+)s \(limit (\d+)s\): (.*)$", res.stdout, re.M)
    commands = [cmd for _, _, cmd in steps]
    assert len(commands) == 4
    assert "-m gpu" in commands[0]
    assert "benchmarks/cifar_epoch.py" in commands[1]
    assert "sweeps/gpu-check.yaml" in commands[2] and "--device cuda" in commands[2]
    assert "runners/report.py --results results/gpu-check" in commands[3]
    assert sum(int(limit) for _, limit, _ in steps) <= 8 * 60
    assert all(int(p) <= int(limit) for p, limit, _ in steps)


def test_gpu_check_spec_has_four_widths_two_seeds_and_both_optimizers(tmp_path):
    res = _run(
        sys.executable,
        "runners/sweep.py",
        "sweeps/gpu-check.yaml",
        "--results",
        str(tmp_path / "out"),
        "--dry-run",
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    runs = re.findall(r"cifar10-resnet18 (sgd|sam)\S* (?:rho=\S+ )?w(\S+) s(\d)", res.stdout)
    assert len(runs) == 4 * 2 * 2
    assert {w for _, w, _ in runs} == {"0.125x", "0.25x", "0.5x", "1x"}
    assert {s for _, _, s in runs} == {"0", "1"} and {o for o, _, _ in runs} == {"sgd", "sam"}
