"""matrix-factorization: linear convergence of SGD and SAM on y = A x, A in R^{10x6}, fitted
by U V x with rank k in {4, 10} (the paper's linear-convergence experiment).

Trains ``synthetic-matrix-factorization`` at each rank, evaluates the training loss every
epoch, and draws log training loss vs epoch per rank and optimizer, with the fitted slope per
epoch (``results/tables/matrix_factorization.md``) -> ``<results>/figures/matrix_factorization.png``.
At k = 10 >= rank(A) = 6 the model interpolates and the loss falls at a linear rate; at k = 4
it stalls at the best rank-4 error (the sum of the squared 5th and 6th singular values of A,
for x ~ N(0, I)).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from domains import create_workload
from results.store import Store
from results.theory_figures import matrix_factorization_figure
from runners.engine.theory_experiments.common import parse_seeds, run_configs, train_all
from runners.engine.train import Execution
from samcore import parse_widths

WORKLOAD = "synthetic-matrix-factorization"
SEEDS = "0"
PRESETS = ("smoke", "quick", "paper")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("matrix-factorization", help="log training loss vs epoch, ranks 4 and 10")
    p.add_argument("--preset", default="quick", choices=PRESETS)
    p.add_argument("--widths", default="4x,10x", help="ranks k (1x = rank 1)")
    p.add_argument("--rho", type=float, default=0.01, help="SAM radius (default 0.01)")
    return p


def run(args: argparse.Namespace, store: Store, ex: Execution) -> int:
    workload = create_workload(WORKLOAD, args.preset)
    workload.setup_data(Path("."), torch.device("cpu"))
    seeds, failures = parse_seeds(args.seeds), 0
    for width in parse_widths(args.widths, workload.widths):
        failures += train_all(
            workload,
            run_configs(workload, args.preset, width, seeds, args.rho),
            store,
            ex,
            f"rank {round(width)}",
        )[0]
    fig, table = matrix_factorization_figure(store, ex.results_dir)
    print(table.read_text())
    print(f"wrote {fig} and {table}")
    return 1 if failures else 0
