"""Helpers for the fault-injection tests: a small synthetic run trained in-process, its metric
rows without wall times, and an interruption at a chosen (epoch, batch)."""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from domains import Workload, create_workload
from results.store import Store
from runners.engine.config import RunConfig
from runners.engine.train import Execution, RunOutcome, train_run

# 512 examples / batch 64 = 8 SAM steps per epoch: an epoch takes milliseconds.
SMALL = {"num_epochs": 4, "warmup_steps": 4}


def synthetic(**overrides: Any) -> Workload:
    w = create_workload("synthetic-regression", "smoke", **{**SMALL, **overrides})
    w.setup_data(Path("."), torch.device("cpu"))
    return w


def run_config(workload: Workload, optimizer: str = "sam", seed: int = 0) -> RunConfig:
    c = workload.config
    return RunConfig(
        workload=workload.name,
        preset="smoke",
        width=1.0,
        optimizer=optimizer,
        base_optimizer=c.optimizer,
        seed=seed,
        rho=c.rho if optimizer == "sam" else 0.0,
        workload_config=dataclasses.asdict(c),
    )


def train(workload: Workload, cfg: RunConfig, results: Path) -> RunOutcome:
    with Store(results / "runs.sqlite") as store:
        return train_run(workload, cfg, store, Execution(results_dir=results, progress=False))


def metric_rows(db: Path, run_id: str | None = None) -> list[tuple]:
    """(run_id, step, epoch, key, value) rows, wall-clock keys left out (they differ)."""
    with contextlib.closing(sqlite3.connect(db)) as con:
        sql = "SELECT run_id, step, epoch, key, value FROM metrics WHERE key != 'time/wall_s'"
        params: tuple = ()
        if run_id is not None:
            sql, params = sql + " AND run_id = ?", (run_id,)
        return con.execute(sql + " ORDER BY run_id, step, key", params).fetchall()


def summary_without_wall(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if "wall" not in k}


def integrity(db: Path) -> str:
    with contextlib.closing(sqlite3.connect(db)) as con:
        return con.execute("PRAGMA integrity_check").fetchone()[0]


@contextlib.contextmanager
def interrupted_at(workload: Workload, epoch: int, batch: int) -> Iterator[None]:
    """Ctrl-C (KeyboardInterrupt) just before batch ``batch`` of ``epoch`` (0-based) is used."""
    original = workload.train_batches

    def batches(e: int, gen: torch.Generator) -> Iterator[Any]:
        for j, b in enumerate(original(e, gen)):
            if (e, j) == (epoch, batch):
                raise KeyboardInterrupt
            yield b

    workload.train_batches = batches  # type: ignore[method-assign]
    try:
        yield
    finally:
        del workload.train_batches  # back to the class's method
