"""Damaged checkpoints: every kind is detected (header, checksum, payload, run id), the run
resumes from the previous good file or from scratch, says so, and ends with exactly the
metrics of an uninterrupted run. Garbage is never loaded."""

from __future__ import annotations

import io
import shutil

import pytest
import torch

from runners.checkpoint import load_checkpoint, save_checkpoint
from runners.train import checkpoint_path
from tests.runners.fault_helpers import (
    SMALL,
    integrity,
    interrupted_at,
    metric_rows,
    run_config,
    summary_without_wall,
    synthetic,
    train,
)


def _truncate(data: bytes, run_id: str) -> bytes:
    return data[: len(data) // 2]


def _flip_byte(data: bytes, run_id: str) -> bytes:
    out = bytearray(data)
    out[len(out) * 3 // 4] ^= 0x01  # one bit, inside the torch.save payload
    return bytes(out)


def _wrong_header(data: bytes, run_id: str) -> bytes:
    return b"SAMCKPT0" + data[8:]


def _empty(data: bytes, run_id: str) -> bytes:
    return b""


def _other_run(data: bytes, run_id: str) -> bytes:
    """A valid checkpoint (good checksum) written by another run."""
    payload = torch.load(io.BytesIO(data.partition(b"\n")[2]), weights_only=False)
    return _checkpoint_bytes({**payload, "run_id": "f" * 20})


def _not_a_dict(data: bytes, run_id: str) -> bytes:
    """A good header and checksum around something that is not a checkpoint."""
    return _checkpoint_bytes(["not", "a", "checkpoint"])  # type: ignore[arg-type]


def _checkpoint_bytes(payload) -> bytes:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        save_checkpoint(Path(d) / "c.pt", payload)
        return (Path(d) / "c.pt").read_bytes()


DAMAGE = {
    "truncated": (_truncate, "checksum"),
    "flipped-byte": (_flip_byte, "checksum"),
    "wrong-header": (_wrong_header, "bad header"),
    "empty": (_empty, "bad header"),
    "other-run": (_other_run, "belongs to run 'ffff"),
    "not-a-dict": (_not_a_dict, "not a checkpoint dict"),
}


@pytest.fixture(scope="module")
def workload():
    return synthetic()


@pytest.fixture(scope="module")
def reference(workload, tmp_path_factory):
    """The uninterrupted run: its metric rows and summary."""
    out = tmp_path_factory.mktemp("clean")
    cfg = run_config(workload)
    outcome = train(workload, cfg, out)
    assert outcome.status == "done"
    rows = metric_rows(out / "runs.sqlite")
    # both protocols in the summary, read back from the last epoch's rows (resumed runs must
    # reproduce them: _resume_and_check compares whole summaries)
    last = {k: v for _, _, e, k, v in rows if e == SMALL["num_epochs"]}
    s = outcome.summary
    assert s["final/epoch"] == SMALL["num_epochs"]
    assert (s["final/val_mse"], s["final/test_mse"]) == (last["val/mse"], last["test/mse"])
    assert s["best/epoch"] is not None
    return rows, summary_without_wall(s)


@pytest.fixture
def killed(workload, tmp_path):
    """A run interrupted in epoch 3: latest checkpoint = epoch 2, .prev = epoch 1."""
    cfg = run_config(workload)
    with interrupted_at(workload, epoch=2, batch=3), pytest.raises(KeyboardInterrupt):
        train(workload, cfg, tmp_path)
    ckpt = checkpoint_path(tmp_path, cfg.run_id)
    assert load_checkpoint(ckpt)[0]["state"]["epoch"] == 2
    assert load_checkpoint(ckpt.with_name(ckpt.name + ".prev"))[0]["state"]["epoch"] == 1
    return cfg, ckpt


def _resume_and_check(workload, cfg, results, reference, capsys, *, epoch, warnings):
    outcome = train(workload, cfg, results)
    out = capsys.readouterr()
    assert outcome.status == "done", outcome.message
    said = out.out + out.err
    if epoch is None:
        assert "no usable checkpoint; starting from scratch" in said
    else:
        assert f"resumed from epoch {epoch} " in said
    bad = [ln for ln in out.err.splitlines() if ln.startswith("warning: ignoring checkpoint")]
    assert len(bad) == len(warnings), out.err
    for line, needle in zip(bad, warnings):
        assert needle in line, line
    rows, summary = reference
    assert metric_rows(results / "runs.sqlite") == rows  # bitwise: nothing garbage was loaded
    assert summary_without_wall(outcome.summary) == summary
    assert integrity(results / "runs.sqlite") == "ok"


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_latest_falls_back_to_prev(workload, killed, reference, tmp_path, capsys, damage):
    cfg, ckpt = killed
    corrupt, reason = DAMAGE[damage]
    ckpt.write_bytes(corrupt(ckpt.read_bytes(), cfg.run_id))
    _resume_and_check(workload, cfg, tmp_path, reference, capsys, epoch=1, warnings=[reason])


@pytest.mark.parametrize(
    "latest,prev",
    [("truncated", "empty"), ("flipped-byte", "other-run"), ("wrong-header", "not-a-dict")],
)
def test_both_damaged_restarts_from_scratch(
    workload, killed, reference, tmp_path, capsys, latest, prev
):
    cfg, ckpt = killed
    prev_path = ckpt.with_name(ckpt.name + ".prev")
    ckpt.write_bytes(DAMAGE[latest][0](ckpt.read_bytes(), cfg.run_id))
    prev_path.write_bytes(DAMAGE[prev][0](prev_path.read_bytes(), cfg.run_id))
    _resume_and_check(
        workload,
        cfg,
        tmp_path,
        reference,
        capsys,
        epoch=None,
        warnings=[DAMAGE[latest][1], DAMAGE[prev][1]],
    )


def test_latest_missing_after_a_kill_between_renames_uses_prev(
    workload, killed, reference, tmp_path, capsys
):
    """save_checkpoint renames latest -> .prev, then .tmp -> latest: a kill in between leaves
    only .prev and a complete .tmp. The .tmp is never trusted (its rename did not happen)."""
    cfg, ckpt = killed
    shutil.move(ckpt, ckpt.with_name(ckpt.name + ".tmp"))
    _resume_and_check(workload, cfg, tmp_path, reference, capsys, epoch=1, warnings=[])


def test_leftover_tmp_is_ignored(workload, killed, reference, tmp_path, capsys):
    cfg, ckpt = killed
    ckpt.with_name(ckpt.name + ".tmp").write_bytes(b"half a checkpoint")
    _resume_and_check(workload, cfg, tmp_path, reference, capsys, epoch=2, warnings=[])
