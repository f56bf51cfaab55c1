"""Checkpoints are checksummed; the stored config alone rebuilds a run's workload. (SIGKILL and
resume of run.py: tests/runners/test_kill_points.py.)"""

from __future__ import annotations

import json

import pytest
import torch

from runners.engine.checkpoint import CorruptCheckpoint, load_checkpoint, save_checkpoint


def test_corrupt_checkpoint_is_detected_and_the_previous_one_used(tmp_path):
    path = tmp_path / "run.pt"
    save_checkpoint(path, {"step": 1, "w": torch.ones(3)})
    save_checkpoint(path, {"step": 2, "w": torch.ones(3) * 2})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated
    payload, warnings = load_checkpoint(path)
    assert payload["step"] == 1 and "checksum" in warnings[0]
    (tmp_path / "run.pt.prev").write_bytes(b"garbage")
    payload, warnings = load_checkpoint(path)
    assert payload is None and len(warnings) == 2


def test_checkpoint_flipped_byte_fails_checksum(tmp_path):
    path = tmp_path / "run.pt"
    save_checkpoint(path, {"w": torch.arange(100.0)})
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF
    path.write_bytes(bytes(data))
    from runners.engine.checkpoint import _read

    with pytest.raises(CorruptCheckpoint):
        _read(path)


def test_stored_config_alone_rebuilds_the_workload():
    """RunConfig.from_dict + workload_for_run give back the identical run (same hash) and an
    identical workload config, after a JSON round trip as in the store."""
    import dataclasses

    from domains import create_workload
    from runners.engine.config import RunConfig, workload_for_run

    w = create_workload("mnist-mlp", "quick", label_noise="0.2", lr_milestones="0.5,0.75")
    cfg = RunConfig(
        workload="mnist-mlp",
        preset="quick",
        width=4.0,
        optimizer="sam",
        base_optimizer="sgd",
        rho=0.1,
        workload_config=dataclasses.asdict(w.config),
    )
    back = RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back.run_id == cfg.run_id
    assert workload_for_run(back).config == w.config
    with pytest.raises(ValueError, match="unknown keys"):
        RunConfig.from_dict({**cfg.to_dict(), "sam_strat": 0.5})
