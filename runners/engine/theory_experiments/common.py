"""What the theory experiments share: seeds, run configs, training a list of runs, loading a
done run's final model."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

from domains import Workload
from results.store import Store
from runners.engine.checkpoint import load_checkpoint
from runners.engine.cli import UsageError
from runners.engine.config import RunConfig
from runners.engine.train import Execution, checkpoint_path, train_run
from samcore import format_width


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        raise UsageError(f"--seeds must be a comma list of integers, got {text!r}") from None
    if any(s < 0 for s in seeds):
        raise UsageError(f"--seeds must be non-negative, got {text!r}")
    return seeds


def run_configs(
    workload: Workload, preset: str, width: float, seeds: list[int], rho: float
) -> Iterator[RunConfig]:
    """Base and SAM RunConfigs of one workload config (as runners/run.py plans them)."""
    c = workload.config
    wc = dataclasses.asdict(c)
    for opt in (c.optimizer, "sam"):
        for seed in seeds:
            yield RunConfig(
                workload=workload.name,
                preset=preset,
                width=width,
                optimizer=opt,
                base_optimizer=c.optimizer,
                seed=seed,
                rho=rho if opt == "sam" else 0.0,
                workload_config=wc,
            )


def train_all(
    workload: Workload, configs: Iterable[RunConfig], store: Store, ex: Execution, what: str = ""
) -> tuple[int, list[tuple[RunConfig, str]]]:
    """Train (or skip, when done) each run; returns (failures, [(config, status)])."""
    failures, outcomes = 0, []
    for cfg in configs:
        out = train_run(workload, cfg, store, ex)
        print(
            f"{out.status:<8} {cfg.optimizer:<4} w{format_width(cfg.width)} s{cfg.seed} "
            f"{what} id {out.run_id}"
        )
        failures += out.status == "failed"
        status = out.status if out.status != "skipped" else store.get_run(out.run_id)["status"]
        outcomes.append((cfg, status))
    return failures, outcomes


def load_final_model(
    workload: Workload, cfg: RunConfig, results_dir: Path, device: str = "cpu"
) -> torch.nn.Module:
    """The final model of a done run (runners/engine/train.py keeps only that checkpoint)."""
    payload, warnings = load_checkpoint(checkpoint_path(results_dir, cfg.run_id), cfg.run_id)
    if payload is None:
        raise UsageError(
            f"run {cfg.run_id}: no usable checkpoint ({'; '.join(warnings) or 'none'})"
        )
    model = workload.build_model(cfg.width)
    model.load_state_dict(payload["model"])
    return model.to(device)
