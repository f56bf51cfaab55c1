"""Execution-only flags (--channels-last, --compile): the same experiment, the same numbers."""

from __future__ import annotations

import sqlite3

import pytest
import torch

from runners.run import main

TINY_CONV = ["--workload", "cifar10-resnet18", "--preset", "tiny", "--width", "0.25x"]


def _rows(tmp_path, name: str, extra: list[str], device: str = "cpu") -> dict:
    results = tmp_path / name
    argv = [*TINY_CONV, "--optimizer", "sam", "--device", device, "--results", str(results)]
    assert main([*argv, "--no-progress", *extra]) == 0
    db = sqlite3.connect(results / "runs.sqlite")
    (run_id, status, config) = db.execute("SELECT id, status, config FROM runs").fetchone()
    assert status == "done"
    rows = db.execute("SELECT key, value FROM metrics WHERE run_id = ?", (run_id,)).fetchall()
    return {"id": run_id, "config": config, **{k: v for k, v in rows if k != "time/wall_s"}}


def _assert_same_run(a: dict, b: dict, rel: float) -> None:
    assert a["id"] == b["id"]  # execution flags are not part of the run's identity
    assert set(a) == set(b)
    for key in a:
        if key not in ("id", "config"):
            assert b[key] == pytest.approx(a[key], rel=rel, abs=1e-5), key


def test_channels_last_is_the_same_run_with_the_same_numbers(tmp_path):
    plain = _rows(tmp_path, "plain", [])
    nhwc = _rows(tmp_path, "nhwc", ["--channels-last"])
    # NHWC convolutions sum in another order; two SAM steps of a BN ResNet on random labels
    # amplify that to ~0.5% in the second step's gradient norm (losses agree to ~2e-4).
    _assert_same_run(plain, nhwc, rel=1e-2)
    assert '"channels_last": true' in nhwc["config"]


@pytest.mark.slow  # inductor compiles C++ for the CPU: minutes on a busy machine
def test_compile_is_the_same_run_with_the_same_numbers(tmp_path):
    # Fused kernels reorder float sums: the same ~0.5% as channels_last above.
    eager, compiled = _rows(tmp_path, "eager", []), _rows(tmp_path, "compiled", ["--compile"])
    _assert_same_run(eager, compiled, rel=1e-2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fast_path_flags_match_the_plain_cuda_run(tmp_path):
    plain = _rows(tmp_path, "plain", [], device="cuda")
    fast = _rows(tmp_path, "fast", ["--channels-last", "--compile"], device="cuda")
    _assert_same_run(plain, fast, rel=2e-2)  # TF32/bf16 kernels differ between layouts
