"""Determinism on CPU: the same config twice gives bitwise-identical metric rows, and the
config stored with a run is enough, alone, to reproduce it into a fresh store."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import torch

from domains import resolve_data_root
from results.store import Store
from runners.engine.config import RunConfig, workload_for_run
from runners.engine.train import Execution, train_run
from runners.run import main
from tests.runners.fault_helpers import metric_rows

SYN = ["--domain", "synthetic", "--preset", "smoke", "--optimizer", "both", "--no-progress"]
MNIST = ["--workload", "mnist-mlp", "--preset", "smoke", "--optimizer", "both"]
MNIST += ["--width", "0.25x", "--no-progress", "--download=false", "--train_eval_size=256"]


def _mnist_available() -> bool:
    return (resolve_data_root(None) / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").exists()


def _stored_configs(db: Path) -> list[RunConfig]:
    with sqlite3.connect(db) as con:
        configs = [json.loads(c) for (c,) in con.execute("SELECT config FROM runs ORDER BY id")]
    return [RunConfig.from_dict(c["run"]) for c in configs]


def _reproduce(db: Path, fresh: Path) -> None:
    """Each stored run, rebuilt from its stored config alone, trained into ``fresh``."""
    with Store(fresh / "runs.sqlite") as store:
        for cfg in _stored_configs(db):
            workload = workload_for_run(cfg)
            workload.setup_data(resolve_data_root(None), torch.device("cpu"))
            out = train_run(workload, cfg, store, Execution(results_dir=fresh, progress=False))
            assert out.status == "done", out.message


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(SYN, id="synthetic"),
        pytest.param(
            MNIST,
            id="mnist-mlp",
            marks=[
                pytest.mark.vision,
                pytest.mark.skipif(not _mnist_available(), reason="MNIST not under $SAM_DATA"),
            ],
        ),
    ],
)
def test_same_config_twice_and_from_the_stored_config(tmp_path, capsys, argv):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert main(argv + ["--results", str(a)]) == 0
    torch.manual_seed(1234)  # a different global state before the second run must not matter
    assert main(argv + ["--results", str(b)]) == 0
    rows = metric_rows(a / "runs.sqlite")
    assert len({r[0] for r in rows}) == 2 and len(rows) > 10
    assert rows == metric_rows(b / "runs.sqlite")  # bitwise: floats compared with ==

    _reproduce(a / "runs.sqlite", c)
    assert metric_rows(c / "runs.sqlite") == rows
    ids = [cfg.run_id for cfg in _stored_configs(a / "runs.sqlite")]
    assert [cfg.run_id for cfg in _stored_configs(c / "runs.sqlite")] == ids
