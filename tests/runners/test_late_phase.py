"""Late-phase SAM (``sam_start``/``sam_end``): ids of old runs unchanged, the switch lands on the
expected step, the plain phase is the base optimizer bit for bit, momentum carries over, and a
resumed late-phase run ends where an uninterrupted one does."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from domains import create_workload
from results.store import Store
from runners.engine.checkpoint import load_checkpoint
from runners.engine.config import RunConfig
from runners.engine.train import Execution, checkpoint_path, train_run
from runners.run import main
from samcore import SAM, train_step

STEPS_PER_EPOCH = 8  # smoke preset: 512 examples, batch 64


def _workload(**overrides):
    w = create_workload("synthetic-regression", "smoke", **overrides)
    w.setup_data(Path("."), torch.device("cpu"))
    return w


def _cfg(workload, optimizer: str, **kw) -> RunConfig:
    return RunConfig(
        workload=workload.name,
        preset="smoke",
        width=1.0,
        optimizer=optimizer,
        base_optimizer="sgd",
        rho=0.1 if optimizer == "sam" else 0.0,
        workload_config=dataclasses.asdict(workload.config),
        **kw,
    )


def _run(tmp_path: Path, workload, cfg: RunConfig):
    store = Store(tmp_path / "runs.sqlite")
    ex = Execution(results_dir=tmp_path, progress=False)
    out = train_run(workload, cfg, store, ex)
    payload, _ = load_checkpoint(checkpoint_path(tmp_path, cfg.run_id))
    losses = [r["value"] for r in store.metrics(cfg.run_id, "train/loss_first_pass")]
    store.close()
    return out, payload["model"], losses


def test_run_ids_of_configs_without_the_new_fields_are_unchanged():
    w = create_workload("synthetic-regression", "smoke")
    cfg = _cfg(w, "sam")
    old = dataclasses.asdict(cfg)
    # the dict the hash was taken of before these fields existed (protocol came later still)
    del old["sam_start"], old["sam_end"], old["protocol"]
    del old["workload_config"]["train_eval_size"]  # a later field, left out at its default
    blob = json.dumps(old, sort_keys=True, default=str)
    assert cfg.run_id == hashlib.sha256(blob.encode()).hexdigest()[:20]
    assert _cfg(w, "sam", sam_start=0.5).run_id != cfg.run_id
    assert _cfg(w, "sam", sam_end=0.5).run_id != cfg.run_id
    assert RunConfig.from_dict(_cfg(w, "sam", sam_start=0.5).to_dict()).sam_start == 0.5


@pytest.mark.parametrize(
    "optimizer,start,end",
    [("sgd", 0.5, 1.0), ("sam", 0.5, 0.5), ("sam", -0.1, 1.0), ("sam", 0.2, 1.5)],
)
def test_bad_switch_fractions_are_rejected(optimizer, start, end):
    w = create_workload("synthetic-regression", "smoke")
    with pytest.raises(ValueError):
        _cfg(w, optimizer, sam_start=start, sam_end=end)


def test_switch_step_and_pass_count(tmp_path):
    w = _workload()  # 2 epochs x 8 steps
    total = 2 * STEPS_PER_EPOCH
    cfg = _cfg(w, "sam", sam_start=0.5)
    assert [cfg.sam_active(t, total) for t in range(total)] == [False] * 8 + [True] * 8
    window = _cfg(w, "sam", sam_start=0.25, sam_end=0.75)
    assert [t for t in range(total) if window.sam_active(t, total)] == list(range(4, 12))

    base, base_params, base_losses = _run(tmp_path / "base", w, _cfg(w, "sgd"))
    late, late_params, late_losses = _run(tmp_path / "late", w, cfg)
    assert base.summary["forward_backward_passes"] == total
    assert late.summary["forward_backward_passes"] == total + 8  # 8 SAM steps, 2 passes each
    # Epoch 1 is all base steps (same init, same data order): the same first-pass losses.
    assert late_losses[0] == base_losses[0] and late_losses[1] != base_losses[1]


def test_start_after_the_last_step_is_the_base_run_bit_for_bit(tmp_path):
    w = _workload()
    no_sam = _cfg(w, "sam", sam_start=0.99)  # 0.99 * 16 > 15: no step ascends
    out, params, losses = _run(tmp_path / "late", w, no_sam)
    base, base_params, base_losses = _run(tmp_path / "base", w, _cfg(w, "sgd"))
    assert out.summary["forward_backward_passes"] == base.summary["forward_backward_passes"]
    assert losses == base_losses
    for k in base_params:
        assert torch.equal(params[k], base_params[k]), k


def test_plain_steps_carry_momentum_into_the_sam_steps():
    """Two plain steps then one SAM step with the same SAM(SGD) object, against plain SGD
    written out by hand: the momentum buffer of the plain phase is used by the SAM step."""
    torch.manual_seed(1)
    model = nn.Linear(3, 2)
    ref = nn.Linear(3, 2)
    ref.load_state_dict(model.state_dict())
    x, y = torch.randn(8, 3), torch.randn(8, 2)

    def loss_fn(m, batch):
        return (m(batch[0]) - batch[1]).pow(2).mean(), {}

    rho, lr, mom = 0.05, 0.1, 0.9
    sam = SAM(model.parameters(), torch.optim.SGD, rho=rho, lr=lr, momentum=mom)
    sgd = torch.optim.SGD(ref.parameters(), lr=lr, momentum=mom)
    for ascent in (False, False, True):
        train_step(model, sam, loss_fn, (x, y), ascent=ascent)
        sgd.zero_grad()
        loss_fn(ref, (x, y))[0].backward()
        if ascent:  # gradient at w + rho g / ||g||, by hand
            g = [p.grad.clone() for p in ref.parameters()]
            norm = torch.sqrt(sum((gi**2).sum() for gi in g))
            probe = nn.Linear(3, 2)
            with torch.no_grad():
                for p, q, gi in zip(probe.parameters(), ref.parameters(), g):
                    p.copy_(q + rho * gi / (norm + 1e-12))
            loss_fn(probe, (x, y))[0].backward()
            for p, q in zip(ref.parameters(), probe.parameters()):
                p.grad = q.grad.clone()
        sgd.step()
        for p, q in zip(model.parameters(), ref.parameters()):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-6)
    assert not all(
        torch.equal(a, b) for a, b in zip(model.parameters(), nn.Linear(3, 2).parameters())
    )


class _Interrupting:
    """The workload, but evaluation at ``epoch`` raises KeyboardInterrupt (a kill mid-run)."""

    def __init__(self, workload, epoch: int) -> None:
        self._w, self._epoch, self._calls = workload, epoch, 0

    def __getattr__(self, name):
        return getattr(self._w, name)

    def evaluate(self, model):
        self._calls += 1
        if self._calls == self._epoch:
            raise KeyboardInterrupt
        return self._w.evaluate(model)


def test_resumed_late_phase_run_matches_an_uninterrupted_one(tmp_path):
    w = _workload(num_epochs=3)  # 24 steps; SAM from step 12, inside epoch 2
    cfg = _cfg(w, "sam", sam_start=0.5)
    whole, whole_params, whole_losses = _run(tmp_path / "whole", w, cfg)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "killed", _Interrupting(w, epoch=2), cfg)
    resumed, params, losses = _run(tmp_path / "killed", w, cfg)
    assert resumed.summary["forward_backward_passes"] == 24 + 12
    assert resumed.summary == {**whole.summary, "wall_time_s": resumed.summary["wall_time_s"]}
    assert losses == whole_losses
    for k in whole_params:
        assert torch.equal(params[k], whole_params[k]), k


@pytest.mark.parametrize(
    "args",
    [
        ["--sam-start", "1.0"],
        ["--sam-start", "0.5,abc"],
        ["--sam-start", "0.6", "--sam-end", "0.5"],
        ["--sam-start", "0.5", "--optimizer", "base"],
    ],
)
def test_cli_bad_switch_values_exit_2_with_one_line(args, tmp_path, capsys):
    argv = ["--domain", "synthetic", "--preset", "smoke", "--results", str(tmp_path), *args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sam" in err[0], err
    assert not (tmp_path / "runs.sqlite").exists()


def test_cli_runs_the_switch_grid(tmp_path, capsys):
    argv = ["--domain", "synthetic", "--preset", "smoke", "--optimizer", "sam", "--no-progress"]
    argv += ["--sam-start", "0,0.5", "--results", str(tmp_path)]
    assert main(argv) == 0
    with Store(tmp_path / "runs.sqlite") as store:
        runs = store.runs(status="done")
    by_start = {r["config"]["run"]["sam_start"]: r["summary"] for r in runs}
    assert by_start[0.0]["forward_backward_passes"] == 32
    assert by_start[0.5]["forward_backward_passes"] == 24
