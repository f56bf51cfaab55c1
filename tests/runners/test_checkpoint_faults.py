"""Damaged checkpoints: every kind is detected (header, checksum, payload, run id), the run
resumes from the previous good file or from scratch, says so, and ends with exactly the
metrics of an uninterrupted run. Garbage is never loaded.

Also checkpoints that pass their checksum but must not be used (issue 20): one whose pickle
would run code (finding 4; the code must not run) and ones that do not fit the model, written
by another code version under the same config hash (finding 7: renamed key, other shape,
optimizer state, missing field, RNG state). A refused file leaves the model as it was, so a
fresh start after two refusals still matches the uninterrupted run bit for bit."""

from __future__ import annotations

import io
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from runners.engine.checkpoint import (
    IncompatibleCheckpoint,
    capture_rng_state,
    load_checkpoint,
    restore_training_state,
    save_checkpoint,
)
from runners.engine.train import checkpoint_path
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
    return _checkpoint_bytes({**_payload(data), "run_id": "f" * 20})


def _payload(data: bytes) -> dict:
    return torch.load(io.BytesIO(data.partition(b"\n")[2]), weights_only=True)


def _edited(edit):
    """A damage that rewrites the payload and saves it again: a good header and checksum."""

    def damage(data: bytes, run_id: str) -> bytes:
        payload = _payload(data)
        edit(payload)
        return _checkpoint_bytes(payload)

    return damage


def _rename_key(p):  # e.g. a Sequential renumbered by a code change
    p["model"]["layer0.weight"] = p["model"].pop("0.weight")


def _reshape(p):  # a wider hidden layer under the same config hash
    p["model"]["0.bias"] = torch.zeros(101)


def _optimizer_shape(p):  # a momentum buffer for a parameter of another shape
    p["optimizer"]["state"][0] = {"momentum_buffer": torch.zeros(99, 100)}


def _optimizer_groups(p):  # one parameter fewer in the group
    p["optimizer"]["param_groups"][0]["params"] = [0, 1, 2]


def _missing_field(p):
    del p["state"]["step"]


def _bad_rng(p):  # torch and numpy states fine, python's the wrong length: set last, fails
    p["rng"]["python"] = (3, tuple(range(10)), None)


def _no_scheduler(p):
    del p["scheduler"]


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
    # good checksum, does not fit this model (finding 7)
    "renamed-key": (_edited(_rename_key), "Missing key(s) in state_dict"),
    "wrong-shape": (_edited(_reshape), "size mismatch for 0.bias"),
    "optimizer-shape": (_edited(_optimizer_shape), "optimizer momentum_buffer of shape (99, 100)"),
    "optimizer-groups": (_edited(_optimizer_groups), "optimizer state for 3 parameters"),
    "missing-field": (_edited(_missing_field), "loop state field 'step' missing"),
    "bad-rng": (_edited(_bad_rng), "does not fit this run"),
    "no-scheduler": (_edited(_no_scheduler), "no scheduler in the checkpoint"),
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
    [
        ("truncated", "empty"),
        ("flipped-byte", "other-run"),
        ("wrong-header", "not-a-dict"),
        # the second refusal comes after parameters and two generators were already set
        ("wrong-shape", "bad-rng"),
        ("renamed-key", "optimizer-shape"),
        ("missing-field", "truncated"),
    ],
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


# ---------------------------------------------------------------------- code in a checkpoint
class _RunsCode:
    """Unpickles by calling ``open(marker, "w")``: any code at all would do (the issue's probe
    ran ``os.system``). weights_only refuses the global before calling it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _with_code(data: bytes, marker: Path) -> bytes:
    """A checkpoint with this run's id, a good header and a good checksum, that runs code."""
    return _checkpoint_bytes({**_payload(data), "extra": _RunsCode(marker)})


def test_checkpoint_that_runs_code_is_refused_and_prev_used(
    workload, killed, reference, tmp_path, capsys
):
    cfg, ckpt = killed
    marker = tmp_path / "code-ran"
    ckpt.write_bytes(_with_code(ckpt.read_bytes(), marker))
    reason = "holds code or objects other than tensors and plain data (io.open)"
    _resume_and_check(workload, cfg, tmp_path, reference, capsys, epoch=1, warnings=[reason])
    assert not marker.exists()


def test_both_checkpoints_run_code_restarts_from_scratch(
    workload, killed, reference, tmp_path, capsys
):
    cfg, ckpt = killed
    marker = tmp_path / "code-ran"
    prev = ckpt.with_name(ckpt.name + ".prev")
    for path in (ckpt, prev):
        path.write_bytes(_with_code(path.read_bytes(), marker))
    needle = "holds code"
    _resume_and_check(
        workload, cfg, tmp_path, reference, capsys, epoch=None, warnings=[needle, needle]
    )
    assert not marker.exists()


def test_checkpoint_payload_is_plain_data(killed):
    """What save_checkpoint writes loads under weights_only=True (numpy's RNG key included,
    as an int64 tensor), so refusing everything else costs nothing."""
    _, ckpt = killed
    payload = _payload(ckpt.read_bytes())
    name, key, pos, *_ = payload["rng"]["numpy"]
    assert name == "MT19937" and key.dtype == torch.int64 and key.shape == (624,)
    assert 0 <= int(key.min()) and int(key.max()) <= 2**32 - 1 and isinstance(pos, int)


# ---------------------------------------------------------------------- restore, directly
def _tiny():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0)
    return model, opt, sched


def _draws() -> tuple[float, float, float]:
    return torch.rand(()).item(), float(np.random.rand()), random.random()


def test_restore_sets_every_generator_and_the_model(tmp_path):
    model, opt, sched = _tiny()
    model(torch.ones(2, 3)).sum().backward()
    opt.step()  # a momentum buffer to restore
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    payload = {
        "run_id": "r",
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "rng": capture_rng_state(),
        "state": {"epoch": 1, "step": 1, "best": None, "wall_time_s": 0.5, "examples": 2,
                  "passes": 1},
    }  # fmt: skip
    expected = _draws()  # what the generators give right after the checkpoint
    save_checkpoint(tmp_path / "c.pt", payload)
    loaded, warnings = load_checkpoint(tmp_path / "c.pt", "r")
    assert warnings == []
    fresh, fresh_opt, fresh_sched = _tiny()
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    state = restore_training_state(loaded, fresh, fresh_opt, fresh_sched)
    assert state["step"] == 1
    assert _draws() == expected
    for a, b in zip(fresh.parameters(), model.parameters()):
        assert torch.equal(a, b)
    assert torch.equal(
        fresh_opt.state_dict()["state"][0]["momentum_buffer"],
        opt.state_dict()["state"][0]["momentum_buffer"],
    )


def test_refused_restore_leaves_model_optimizer_and_generators_as_they_were(tmp_path):
    model, opt, sched = _tiny()
    model(torch.ones(2, 3)).sum().backward()
    opt.step()
    good = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "rng": {**capture_rng_state(), "python": (3, (1, 2), None)},  # refused last
        "state": {"epoch": 1, "step": 1, "best": None, "wall_time_s": 0.5, "examples": 2,
                  "passes": 1},
    }  # fmt: skip
    fresh, fresh_opt, fresh_sched = _tiny()
    before = [p.detach().clone() for p in fresh.parameters()]
    torch.manual_seed(5), np.random.seed(5), random.seed(5)
    expected = _draws()
    torch.manual_seed(5), np.random.seed(5), random.seed(5)
    with pytest.raises(IncompatibleCheckpoint):
        restore_training_state(good, fresh, fresh_opt, fresh_sched)
    assert _draws() == expected
    assert all(torch.equal(a, b) for a, b in zip(fresh.parameters(), before))
    assert fresh_opt.state_dict()["state"] == {}
    assert fresh_sched.state_dict() == _tiny()[2].state_dict()
