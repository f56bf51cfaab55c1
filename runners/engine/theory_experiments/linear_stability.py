"""linear-stability: sharpness and Hessian moments of SGD and SAM minima (paper Fig. 6).

MNIST MLP at width 10x ([3000, 1000]) with the squared loss (``mnist-mlp`` ``loss=mse``),
constant lr 0.1, no weight decay or momentum; after training, lambda_max (Lanczos) and the
normalised moments tr(H^k)/n, k = 1..4 (Hutchinson), of the training loss on 1,000 fixed
training examples (``runners/sharpness.py``'s measures, stored with each run). A minimum
found at lr eta is linearly stable for (full-batch) GD only if lambda_max <= 2/eta = 20; the
paper measured SGD 16.05 and SAM 3.71. Figure: lambda_max per optimizer against 2/lr, and the
moments -> ``<results>/figures/linear_stability.png``.
"""

from __future__ import annotations

import argparse

import torch

from domains import create_workload, resolve_data_root
from results.store import Store
from results.theory_figures import linear_stability_figure
from runners.engine.measure import MeasureSettings, measure_run
from runners.engine.theory_experiments.common import parse_seeds, run_configs, train_all
from runners.engine.train import Execution

WORKLOAD = "mnist-mlp"
SEEDS = "0"
# The recipe of Fig. 6 on top of the mnist-mlp presets: squared loss, plain SGD at a constant LR.
RECIPE = {
    "loss": "mse",
    "learning_rate": 0.1,
    "momentum": 0.0,
    "weight_decay": 0.0,
    "lr_schedule": "constant",
}
# preset -> (mnist-mlp preset, width, extra overrides, measure settings)
PRESETS = {
    "paper": ("paper", 10.0, {}, MeasureSettings(("lambda_max", "moments"), n_examples=1000)),
    # CPU minutes: width 1x (266k parameters), 10k examples, 10 epochs; fewer Hessian products.
    "quick": (
        "quick",
        1.0,
        {"num_train": 10_000, "num_epochs": 10, "train_eval_size": 2_000},
        MeasureSettings(
            ("lambda_max", "moments"), n_examples=1000, lanczos_iter=40, moment_samples=10
        ),
    ),
    "smoke": (
        "tiny",
        0.25,
        {"num_epochs": 2},
        MeasureSettings(
            ("lambda_max", "moments"), n_examples=32, lanczos_iter=10, moment_samples=2
        ),
    ),
}


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("linear-stability", help="lambda_max and tr(H^k)/n of SGD vs SAM minima")
    p.add_argument("--preset", default="quick", choices=tuple(PRESETS))
    p.add_argument("--rho", type=float, default=0.1, help="SAM radius (default 0.1)")
    p.add_argument("--data-root", default=None, help="data sets folder (default: $SAM_DATA)")
    return p


def run(args: argparse.Namespace, store: Store, ex: Execution) -> int:
    preset, width, extra, settings = PRESETS[args.preset]
    workload = create_workload(WORKLOAD, preset, **{**RECIPE, **extra})
    workload.setup_data(resolve_data_root(args.data_root), torch.device(ex.device))
    failures, outcomes = train_all(
        workload,
        run_configs(workload, preset, width, parse_seeds(args.seeds), args.rho),
        store,
        ex,
        "mse lr 0.1",
    )
    for cfg, status in outcomes:
        if status == "done" and not store.measures(cfg.run_id, "lambda_max"):
            values = measure_run(
                store, ex.results_dir, cfg.run_id, settings, ex.device, workload=workload
            )
            print(
                f"{cfg.optimizer:<4} s{cfg.seed} "
                + "  ".join(f"{k} {v:.4g}" for k, v in values.items())
            )
    path = linear_stability_figure(store, ex.results_dir)
    print(f"wrote {path}")
    return 1 if failures else 0
