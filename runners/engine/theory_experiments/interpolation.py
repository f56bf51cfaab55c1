"""interpolation: the loss along the straight segment between two stored runs' final weights,
theta(alpha) = (1 - alpha) theta_A + alpha theta_B, on train and test ("SAM Efficiently Selects
Flatter Minima Late in Training": linear interpolation between SGD and SAM solutions).

    python runners/theory.py interpolation RUN_A RUN_B [--points 21] [--extend 0.2]
    python runners/theory.py interpolation --preset quick    # trains a SGD and a SAM run first

The runs must be done runs of one workload at one width (runners/engine/train.py keeps each done
run's final model). Buffers (e.g. BatchNorm statistics) are interpolated like the weights.
The losses are the workload's own ``train/loss`` (its training-evaluation subset) and
``test/loss``; they are stored as measure ``interp/<RUN_B>`` of RUN_A (value: the barrier, the
largest train loss above the straight line between the two ends), then drawn ->
``<results>/figures/interpolation_<A>_<B>.png`` and ``<results>/tables/interpolation_<A>_<B>.md``.
"""

from __future__ import annotations

import argparse

import torch

from domains import create_workload, resolve_data_root
from results.store import Store
from results.theory_figures import interpolation_figure
from runners.engine.cli import UsageError
from runners.engine.config import RunConfig, workload_for_run
from runners.engine.theory_experiments.common import (
    load_final_model,
    parse_seeds,
    run_configs,
    train_all,
)
from runners.engine.train import Execution

SEEDS = "0"
# --preset without run ids: train one SGD and one SAM run of this setup, then interpolate.
PRESETS = {
    "smoke": ("mnist-mlp", "tiny", 0.25, {}),
    "quick": ("mnist-mlp", "quick", 0.25, {"num_train": 10_000, "num_epochs": 5}),
}


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("interpolation", help="loss along the segment between two runs' weights")
    p.add_argument("runs", nargs="*", metavar="RUN", help="two done run ids: RUN_A RUN_B")
    p.add_argument("--preset", default=None, choices=tuple(PRESETS), help="train the two runs")
    p.add_argument("--rho", type=float, default=0.1, help="with --preset: SAM radius")
    p.add_argument("--points", type=int, default=21, help="alphas in [0, 1] (default 21)")
    p.add_argument("--extend", type=float, default=0.0, help="also alpha in [-e, 0) and (1, 1+e]")
    p.add_argument("--data-root", default=None, help="data sets folder (default: $SAM_DATA)")
    return p


def check(args: argparse.Namespace) -> None:
    if bool(args.runs) == bool(args.preset) or (args.runs and len(args.runs) != 2):
        raise UsageError("give two run ids RUN_A RUN_B, or --preset (not both)")
    if args.points < 2 or not 0 <= args.extend < 10:
        raise UsageError("--points must be >= 2 and --extend in [0, 10)")


def alphas(points: int, extend: float) -> list[float]:
    n_out = round(extend * (points - 1))  # whole steps of 1/(points-1) beyond each end
    return [i / (points - 1) for i in range(-n_out, points + n_out)]  # exact 0.0 and 1.0


def interpolate_state(a: dict, b: dict, alpha: float) -> dict:
    """(1 - alpha) a + alpha b for floating tensors; integer buffers (counters) from a."""
    return {
        k: torch.lerp(v, b[k], alpha) if v.is_floating_point() else v.clone() for k, v in a.items()
    }


def _run_config(store: Store, run_id: str) -> RunConfig:
    row = store.get_run(run_id)
    if row is None:
        raise UsageError(f"no run {run_id!r} in {store.path}")
    if row["status"] != "done":
        raise UsageError(f"run {run_id} is {row['status']}, not done: no final model")
    return RunConfig.from_dict(row["config"]["run"])


def run(args: argparse.Namespace, store: Store, ex: Execution) -> int:
    check(args)
    failures = 0
    if args.preset:
        name, preset, width, extra = PRESETS[args.preset]
        workload = create_workload(name, preset, **extra)
        workload.setup_data(resolve_data_root(args.data_root), torch.device(ex.device))
        failures, outcomes = train_all(
            workload,
            run_configs(workload, preset, width, parse_seeds(args.seeds)[:1], args.rho),
            store,
            ex,
        )
        if any(status != "done" for _, status in outcomes):
            print("theory.py: a run did not finish; nothing to interpolate")
            return 1
        run_a, run_b = (cfg.run_id for cfg, _ in outcomes)
    else:
        run_a, run_b = args.runs
    cfg_a, cfg_b = _run_config(store, run_a), _run_config(store, run_b)
    if (cfg_a.workload, cfg_a.width) != (cfg_b.workload, cfg_b.width):
        raise UsageError(
            f"runs {run_a} and {run_b} differ in workload or width: no common weight space"
        )
    if args.runs:
        workload = workload_for_run(cfg_a)
        workload.setup_data(resolve_data_root(args.data_root), torch.device(ex.device))
    model_a = load_final_model(workload, cfg_a, ex.results_dir, ex.device)
    state_b = load_final_model(workload, cfg_b, ex.results_dir, ex.device).state_dict()
    state_a = {k: v.clone() for k, v in model_a.state_dict().items()}
    grid, train, test = alphas(args.points, args.extend), [], []
    for alpha in grid:
        model_a.load_state_dict(interpolate_state(state_a, state_b, alpha))
        metrics = workload.evaluate(model_a)
        train.append(metrics["train/loss"])
        test.append(metrics["test/loss"])
    lo, hi = train[grid.index(0.0)], train[grid.index(1.0)]
    barrier = max(t - ((1 - a) * lo + a * hi) for a, t in zip(grid, train) if 0 <= a <= 1)
    details = {
        "run_b": run_b,
        "alpha": grid,
        "train_loss": train,
        "test_loss": test,
        "optimizers": [cfg_a.optimizer, cfg_b.optimizer],
    }
    store.log_measure(run_a, f"interp/{run_b}", barrier, details)
    fig, table = interpolation_figure(store, ex.results_dir, run_a, run_b)
    print(table.read_text())
    print(f"wrote {fig} and {table}")
    return 1 if failures else 0
