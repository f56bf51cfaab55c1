"""one-d-relu: one-hidden-layer ReLU nets on 12 1-D points (paper Figs. 2-3), GD vs SAM per width.

Trains ``synthetic-relu-1d`` at 5/10/100/1000 neurons, 3 seeds, mini-batches of 6 points, SAM
rho 0.2; stores each final model's function on a grid (measure ``function_1d``, with the data
points) and draws the learned functions and the training curves ->
``<results>/figures/relu_1d.png``.

The learning rate: the top Hessian eigenvalue at the notebook's init grows ~ linearly with the
width (measured, 3 seeds: ~40 at 5 neurons, ~130 at 10, ~1,100 at 100, ~10,000 at 1000), so one
LR for every width is either unstable at 1000 neurons or frozen at 5. ``paper``: the notebook's
LR (3e-4 on our batch mean) capped at 0.03/m (3e-5 at 1000 neurons, where 3e-4 exceeds
2/lambda_max ~ 2e-4); ``quick``: 0.05/m (lr x lambda_max at init ~ 0.5 at every width).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from domains import create_workload
from domains.synthetic.relu_1d import X_POINTS, Y_POINTS, function_on_grid
from results.store import Store
from results.theory_figures import relu_1d_figure
from runners.engine.theory_experiments.common import (
    load_final_model,
    parse_seeds,
    run_configs,
    train_all,
)
from runners.engine.train import Execution
from samcore import parse_widths

WORKLOAD = "synthetic-relu-1d"
SEEDS = "0,1,2"  # the default --seeds
# preset -> (LR ceiling, LR numerator c: lr = min(ceiling, c / m))
LEARNING_RATES = {"smoke": (1e-3, 0.05), "quick": (1.0, 0.05), "paper": (3e-4, 0.03)}


def learning_rate(preset: str, neurons: int) -> float:
    ceiling, c = LEARNING_RATES[preset]
    return min(ceiling, c / neurons)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("one-d-relu", help="1-D ReLU nets: learned functions, GD vs SAM per width")
    p.add_argument("--preset", default="quick", choices=tuple(LEARNING_RATES))
    p.add_argument("--widths", default="5x,10x,100x,1000x", help="neurons (1x = 1 neuron)")
    p.add_argument("--rho", type=float, default=0.2, help="SAM radius (default 0.2)")
    return p


def run(args: argparse.Namespace, store: Store, ex: Execution) -> int:
    seeds, failures = parse_seeds(args.seeds), 0
    widths = parse_widths(args.widths, (5.0, 10.0, 100.0, 1000.0))
    for width in widths:
        neurons = round(width)
        workload = create_workload(
            WORKLOAD, args.preset, learning_rate=learning_rate(args.preset, neurons)
        )
        workload.setup_data(Path("."), torch.device("cpu"))
        n_failed, outcomes = train_all(
            workload,
            run_configs(workload, args.preset, width, seeds, args.rho),
            store,
            ex,
            f"m {neurons} lr {workload.config.learning_rate:g}",
        )
        failures += n_failed
        for cfg, status in outcomes:
            if status == "done" and not store.measures(cfg.run_id, "function_1d"):
                store_function(store, workload, cfg, ex.results_dir)
    path = relu_1d_figure(store, ex.results_dir)
    print(f"wrote {path}")
    return 1 if failures else 0


def store_function(store: Store, workload, cfg, results_dir: Path) -> None:
    """The final model's function on a grid (and the data) as measure ``function_1d``; its
    value is the loss on all 12 points."""
    model = load_final_model(workload, cfg, results_dir)
    x, y = function_on_grid(model)
    loss = workload.evaluate(model)["train/loss"]
    details = {"x": x, "y": y, "data_x": list(X_POINTS), "data_y": list(Y_POINTS)}
    store.log_measure(cfg.run_id, "function_1d", loss, details)
