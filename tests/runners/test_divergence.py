"""A loss that becomes NaN or inf at a known step: the run is stored as diverged with exactly
that step, and the rest of run.py's grid goes on.

The test workload poisons one training batch, at global step ``bad_step`` (0-based: the loss
evaluated after ``bad_step`` optimizer steps, the convention of the metric rows' ``step``),
for models of width ``bad_width`` only. The expected step is this number, set by the test,
not read from the runner.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import nn

from domains import Target, TrainConfig, Workload, build_config, registry
from runners.run import main
from samcore.width import scale_width

STEPS_PER_EPOCH = 8  # 256 examples / batch 32


@dataclass(frozen=True)
class PoisonConfig(TrainConfig):
    bad_step: int = -1
    """0-based global step whose training loss is replaced by ``bad_value`` (-1 = never)"""
    bad_width: float = 1.0
    """only models of this width see the bad loss"""
    bad_value: float = math.nan
    """nan, inf or -inf"""
    bad_eval_epoch: int = -1
    """1-based epoch whose val/mse is NaN (-1 = never)"""
    batch_size: int = 32
    num_epochs: int = 4
    learning_rate: float = 0.05
    rho: float = 0.05


class PoisonedRegression(Workload):
    target = Target("mse", "min")
    widths = (1.0, 2.0)

    def __init__(self, config: PoisonConfig) -> None:
        super().__init__(config)
        self.config: PoisonConfig = config
        self.epochs_evaluated = 0

    def build_model(self, width: float) -> nn.Module:
        model = nn.Sequential(nn.Linear(4, scale_width(8, width)), nn.ReLU())
        model.append(nn.Linear(scale_width(8, width), 1))
        model.width = width  # read by loss(): the bad batch hurts one width only
        return model

    def setup_data(self, data_root, device) -> None:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(320, 4, generator=gen)
        y = x.sum(1, keepdim=True) + 0.1 * torch.randn(320, 1, generator=gen)
        self.train_xy, self.val_xy = (x[:256], y[:256]), (x[256:], y[256:])

    def steps_per_epoch(self) -> int:
        return STEPS_PER_EPOCH

    def train_batches(self, epoch: int, generator: torch.Generator) -> Iterator[Any]:
        x, y = self.train_xy
        order = torch.randperm(len(x), generator=generator)
        for j, idx in enumerate(order.split(self.config.batch_size)):
            yield x[idx], y[idx], epoch * STEPS_PER_EPOCH + j == self.config.bad_step

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict]:
        x, y, poisoned = batch
        loss = (model(x) - y).pow(2).mean()
        if poisoned and model.width == self.config.bad_width:
            loss = loss * self.config.bad_value  # nan, or +-inf (the loss is > 0)
        return loss, {}

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        self.epochs_evaluated += 1
        x, y = self.val_xy
        val = (model(x) - y).pow(2).mean().item()
        if self.epochs_evaluated == self.config.bad_eval_epoch and model.width == 1.0:
            val = math.nan
        return {"val/mse": val, "test/mse": val}


@pytest.fixture
def poison_registered(monkeypatch):
    def entry(preset: str = "smoke", **overrides: Any) -> PoisonedRegression:
        return PoisonedRegression(build_config(PoisonConfig, {"smoke": {}}, preset, **overrides))

    registry._import_all()  # so the registry does not import over our entry later
    spec = registry.WorkloadSpec("poisoned-regression", "synthetic", entry, ("smoke",), False, "")
    monkeypatch.setitem(registry._REGISTRY, "poisoned-regression", spec)  # removed after


def _runs(db):
    with sqlite3.connect(db) as con:
        con.row_factory = sqlite3.Row
        return [
            dict(r)
            for r in con.execute(
                "SELECT width, optimizer, status, error, last_step, summary, ended_at FROM runs "
                "ORDER BY width, optimizer"
            )
        ]


def _max_step(db, width, optimizer):
    with sqlite3.connect(db) as con:
        return con.execute(
            "SELECT MAX(m.step) FROM metrics m JOIN runs r ON r.id = m.run_id "
            "WHERE r.width = ? AND r.optimizer = ?",
            (width, optimizer),
        ).fetchone()[0]


ARGS = ["--workload", "poisoned-regression", "--preset", "smoke", "--no-progress"]


@pytest.mark.parametrize("bad_value,bad_step", [("nan", 13), ("inf", 0), ("-inf", 31)])
def test_nonfinite_loss_is_stored_as_diverged_at_its_step_and_the_grid_goes_on(
    poison_registered, tmp_path, capsys, bad_value, bad_step
):
    import json

    argv = ARGS + ["--width", "1x,2x", "--results", str(tmp_path)]
    argv += [f"--bad_step={bad_step}", f"--bad_value={bad_value}", "--bad_width=1"]
    assert main(argv) == 0, capsys.readouterr().err  # diverged is a result, not a failure
    db = tmp_path / "runs.sqlite"
    runs = _runs(db)
    assert [(r["width"], r["optimizer"], r["status"]) for r in runs] == [
        (1.0, "sam", "diverged"),
        (1.0, "sgd", "diverged"),
        (2.0, "sam", "done"),  # after the diverged ones in the grid (1x first): it went on
        (2.0, "sgd", "done"),
    ]
    end_of_bad_epoch = (bad_step // STEPS_PER_EPOCH + 1) * STEPS_PER_EPOCH
    for r in runs[:2]:
        assert json.loads(r["summary"])["diverged_step"] == bad_step
        assert r["error"] == f"non-finite training loss at step {bad_step}"
        # stopped at the end of that epoch (the loss is checked once per epoch, no host sync
        # per step): nothing stored after it
        assert r["last_step"] == end_of_bad_epoch
        assert _max_step(db, r["width"], r["optimizer"]) == end_of_bad_epoch
    for r in runs[2:]:
        assert r["last_step"] == 4 * STEPS_PER_EPOCH
    out = capsys.readouterr().out
    assert out.count("diverged poisoned-regression") == 2
    assert out.count("done     poisoned-regression") == 2

    # Rerun: diverged runs are results too; nothing is repeated or rewritten.
    assert main(argv) == 0
    assert _runs(db) == runs
    assert capsys.readouterr().out.count("already diverged") == 2


def test_nonfinite_validation_metric_is_diverged_at_that_epoch(poison_registered, tmp_path, capsys):
    import json

    argv = ARGS + ["--width", "1x", "--optimizer", "base", "--results", str(tmp_path)]
    assert main(argv + ["--bad_eval_epoch=2"]) == 0
    (run,) = _runs(tmp_path / "runs.sqlite")
    assert run["status"] == "diverged" and run["error"] == "non-finite val/mse at epoch 2"
    assert json.loads(run["summary"])["diverged_step"] == 2 * STEPS_PER_EPOCH
