"""Smoothness and PL constants along training (Shin et al., UAI 2025, Fig. 21; issue 22).

    python runners/theory.py smoothness-pl [--preset quick|paper|smoke] [--results DIR]
        [--seeds 0] [--rho R] [--device cpu|cuda] [--data-root DIR]

Trains base and SAM runs of CIFAR-10 ResNet-18 with ``smoothness_radius`` = 0.1, so every
evaluation (each epoch) stores the local smoothness ||grad L(w + delta) - grad L(w)|| / ||delta||
(delta = 0.1 along the gradient) and the PL ratio ||grad L||^2 / (2 L) of the training loss
(samcore.sharpness.smoothness_pl) as metric rows; then draws them against the epoch per width
(results/smoothness_figure.py) -> ``<results>/figures/smoothness_pl_cifar10-resnet18.png`` and
``<results>/tables/smoothness_pl_cifar10-resnet18.md``. Done runs are skipped (the store is keyed
by config), so rerunning redraws.

Presets: paper = the paper's recipe at 701k / 2.8M / 11.2M parameters (widths 0.25x, 0.5x, 1x);
quick = CPU minutes (1,000 images, 3 epochs, 4 and 8 filters); smoke = seconds (synthetic
images, tests).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from domains import ConfigError, create_workload
from domains.workload import MissingDataError, resolve_data_root
from results.smoothness_figure import smoothness_pl_figure
from results.store import Store, StoreError
from runners.engine.cli import Parser, UsageError
from runners.engine.plan import PlanError, expand_grid
from runners.engine.train import Execution, train_run
from samcore import format_width

WORKLOAD = "cifar10-resnet18"
RADIUS = 0.1  # the paper's delta (Fig. 21)
# preset -> (workload preset, widths, workload overrides)
PRESETS: dict[str, tuple[str, tuple[float, ...], dict[str, Any]]] = {
    "paper": ("paper", (0.25, 0.5, 1.0), {}),
    "quick": (
        "quick",
        (0.0625, 0.125),
        {
            "num_train": 1000,
            "num_val": 500,
            "num_test": 500,
            "num_epochs": 3,
            "train_eval_size": 256,
        },
    ),
    "smoke": ("tiny", (0.0625,), {"num_epochs": 2}),
}


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="theory.py smoothness-pl", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="quick", choices=tuple(PRESETS))
    p.add_argument("--rho", type=float, default=None, help="SAM radius (default: workload's)")
    p.add_argument("--results", default="results", help="results folder (default results/)")
    p.add_argument("--seeds", default="0", help="comma list of seeds (default 0)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--data-root", default=None, help="data folder (default $SAM_DATA)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        raise UsageError(f"--seeds must be a comma list of integers, got {text!r}") from None
    if any(s < 0 for s in seeds):
        raise UsageError(f"--seeds must be non-negative, got {text!r}")
    return seeds


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        seeds = _seeds(args.seeds)
        if args.rho is not None and not args.rho >= 0:
            raise UsageError(f"--rho must be >= 0, got {args.rho}")
        preset, widths, overrides = PRESETS[args.preset]
        workload = create_workload(WORKLOAD, preset, smoothness_radius=RADIUS, **overrides)
        rho = workload.config.rho if args.rho is None else args.rho
        configs = expand_grid(
            workload, preset, widths=widths, optimizers=["both"], rhos=[rho], seeds=seeds
        )
        store = Store(Path(args.results) / "runs.sqlite")
    except (UsageError, StoreError, ConfigError, PlanError, ValueError) as exc:
        print(f"theory.py: error: {exc}", file=sys.stderr)
        return 2
    ex = Execution(
        device=args.device, results_dir=Path(args.results), progress=not args.no_progress
    )
    failures = 0
    try:
        workload.setup_data(resolve_data_root(args.data_root), torch.device(args.device))
        for cfg in configs:
            out = train_run(workload, cfg, store, ex)
            print(
                f"{out.status:<8} {cfg.optimizer:<4} w{format_width(cfg.width)} s{cfg.seed} "
                f"id {out.run_id}"
            )
            failures += out.status == "failed"
        for path in smoothness_pl_figure(store, args.results, WORKLOAD):
            print(f"wrote {path}")
    except MissingDataError as exc:
        print(f"theory.py: error: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    return 1 if failures else 0
