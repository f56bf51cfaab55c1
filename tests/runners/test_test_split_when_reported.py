"""The test split is evaluated only where it can be reported: at epochs where validation
improved (the best-val protocol's candidates) and at the last epoch (the final protocol).

A scripted workload sets the validation metric of every epoch, so the epochs that must see the
test split are known before the run (the test writes them down, it does not read them from the
runner); a real workload trained both ways must report the same numbers.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import nn

from domains import Target, TrainConfig, Workload, build_config, registry
from domains.synthetic.regression import TeacherStudentRegression
from runners.run import main

# val/mse after epochs 1..6 (min mode): improves at 1, 2, 4 and 5; the last epoch is 6
VAL_BY_EPOCH = [3.0, 2.0, 2.5, 1.0, 0.5, 0.7]
EXPECTED_TEST_EPOCHS = [1, 2, 4, 5, 6]


@dataclass(frozen=True)
class ScriptedConfig(TrainConfig):
    batch_size: int = 8
    num_epochs: int = len(VAL_BY_EPOCH)
    learning_rate: float = 0.01
    rho: float = 0.05


class ScriptedValidation(Workload):
    target = Target("mse", "min")
    widths = (1.0,)
    takes_splits = True  # False: the class below, an evaluate() written without ``splits``

    def __init__(self, config: ScriptedConfig) -> None:
        super().__init__(config)
        self.calls: list[tuple[str, ...] | None] = []
        self.evaluations = 0

    def build_model(self, width: float) -> nn.Module:
        return nn.Linear(2, 1)

    def setup_data(self, data_root, device) -> None:
        self.x = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))

    def steps_per_epoch(self) -> int:
        return 2

    def train_batches(self, epoch: int, generator: torch.Generator) -> Iterator[Any]:
        yield from self.x.split(self.config.batch_size)

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict]:
        return model(batch).pow(2).mean(), {}

    def evaluate(self, model: nn.Module, splits: Collection[str] | None = None) -> dict:
        self.calls.append(None if splits is None else tuple(splits))
        wanted = {"train", "val", "test"} if splits is None else set(splits)
        out: dict[str, float] = {}
        if "val" in wanted:
            self.evaluations += 1
            out["val/mse"] = VAL_BY_EPOCH[self.evaluations - 1]
        if "train" in wanted:
            out["train/mse"] = 0.0
        if "test" in wanted:  # epoch e's test value is 10 * e: which epoch it came from shows
            out["test/mse"] = 10.0 * self.evaluations
        return out


class ScriptedWithoutSplits(ScriptedValidation):
    def evaluate(self, model: nn.Module) -> dict:  # the signature before ``splits`` existed
        return super().evaluate(model)


@pytest.fixture
def scripted(monkeypatch):
    made: list[ScriptedValidation] = []

    def register(name: str, cls: type[ScriptedValidation]) -> None:
        def entry(preset: str = "smoke", **overrides: Any) -> ScriptedValidation:
            made.append(cls(build_config(ScriptedConfig, {"smoke": {}}, preset, **overrides)))
            return made[-1]

        spec = registry.WorkloadSpec(name, "synthetic", entry, ("smoke",), False, "")
        monkeypatch.setitem(registry._REGISTRY, name, spec)  # removed after

    registry._import_all()  # so the registry does not import over our entries later
    register("scripted-val", ScriptedValidation)
    register("scripted-val-no-splits", ScriptedWithoutSplits)
    return made


def _test_epochs_and_summary(db) -> tuple[list[int], dict[str, Any]]:
    with sqlite3.connect(db) as con:
        epochs = [
            int(e)
            for (e,) in con.execute(
                "SELECT epoch FROM metrics WHERE key = 'test/mse' ORDER BY step"
            )
        ]
        (summary,) = con.execute("SELECT summary FROM runs").fetchone()
    return epochs, json.loads(summary)


def _run(workload: str, tmp_path) -> int:
    argv = ["--workload", workload, "--preset", "smoke", "--no-progress", "--optimizer", "sgd"]
    return main(argv + ["--results", str(tmp_path)])


def test_test_split_is_evaluated_only_where_validation_improved_and_at_the_last_epoch(
    scripted, tmp_path, capsys
):
    assert _run("scripted-val", tmp_path) == 0, capsys.readouterr().err
    epochs, summary = _test_epochs_and_summary(tmp_path / "runs.sqlite")
    assert epochs == EXPECTED_TEST_EPOCHS
    (calls,) = [w.calls for w in scripted if w.calls]  # the workload object that trained
    assert calls.count(("test",)) == 4  # after epochs 1, 2, 4 and 5
    assert calls.count(None) == 1  # the last epoch: every split in one call
    assert calls.count(("train", "val")) == len(VAL_BY_EPOCH) - 1
    # best-val protocol: epoch 5 (val 0.5) and its test value; final: epoch 6
    assert summary["best/epoch"] == 5 and summary["best/test_mse"] == 50.0
    assert summary["final/epoch"] == 6 and summary["final/test_mse"] == 60.0


def test_a_workload_whose_evaluate_has_no_splits_is_evaluated_on_every_split(
    scripted, tmp_path, capsys
):
    assert _run("scripted-val-no-splits", tmp_path) == 0, capsys.readouterr().err
    epochs, summary = _test_epochs_and_summary(tmp_path / "runs.sqlite")
    assert epochs == list(range(1, len(VAL_BY_EPOCH) + 1))
    assert summary["best/epoch"] == 5 and summary["best/test_mse"] == 50.0


def test_a_real_workload_reports_the_same_numbers_with_and_without_the_lazy_test_split(
    tmp_path, monkeypatch, capsys
):
    argv = ["--workload", "synthetic-regression", "--preset", "smoke", "--no-progress"]
    # 12 epochs of 512 examples: validation peaks early (epoch 3), then the student overfits
    argv += ["--num_epochs=12", "--optimizer", "sam", "--rho", "0.05", "--width", "2x"]

    def stored(results) -> tuple[dict[str, Any], dict[int, float], list[int]]:
        assert main(argv + ["--results", str(results)]) == 0, capsys.readouterr().err
        with sqlite3.connect(results / "runs.sqlite") as con:
            (summary,) = con.execute("SELECT summary FROM runs").fetchone()
            val = dict(con.execute("SELECT epoch, value FROM metrics WHERE key = 'val/mse'"))
            test = [e for (e,) in con.execute("SELECT epoch FROM metrics WHERE key='test/mse'")]
        return json.loads(summary), val, test

    lazy, lazy_val, lazy_test_epochs = stored(tmp_path / "lazy")
    every_split = TeacherStudentRegression.evaluate
    monkeypatch.setattr(
        TeacherStudentRegression, "evaluate", lambda self, model: every_split(self, model)
    )
    full, full_val, full_test_epochs = stored(tmp_path / "full")

    assert lazy_val == full_val and len(full_test_epochs) == 12
    assert set(lazy_test_epochs) < set(full_test_epochs)  # it did skip some
    for key in ("best/epoch", "best/val_mse", "best/test_mse", "final/epoch", "final/test_mse"):
        assert lazy[key] == full[key], key
