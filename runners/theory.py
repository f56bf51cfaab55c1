"""The theory experiments, one command each; runs land in the store, figures come from it.

    python runners/theory.py patch-heatmap [--preset quick] [--results DIR] [--seeds 0]
    python runners/theory.py linear-convergence [--widths 1x,2x,4x,8x] [--results DIR]
    python runners/theory.py one-d-relu [--preset quick] [--seeds 0,1,2]
    python runners/theory.py linear-stability [--preset quick]
    python runners/theory.py matrix-factorization [--preset quick]
    python runners/theory.py interpolation RUN_A RUN_B | --preset quick

The last four (issue 22) and ``smoothness-pl`` (its own parser and ``main``) live in
``runners/engine/theory_experiments/``, one module each, with their docstrings; the two-layer generalization experiment (Allen-Zhu et al.) is a sweep
(``sweeps/theory-allen-zhu.yaml``) whose figure ``runners/report.py`` draws.

patch-heatmap: the signal-noise patch CNN (``synthetic-patch-cnn``, Chen et al. NeurIPS 2023)
over a signal strength x dimension grid, base GD and SAM at each cell, then side-by-side
heatmaps of the final test error -> ``<results>/figures/patch_heatmap_w1.png``.

linear-convergence: a stand-in for the paper's linear-convergence claim on the teacher-student
regression (``synthetic-regression``; the paper's own experiment is ``matrix-factorization``)
with a noiseless teacher and a small training set, so every width interpolates; full-batch GD vs SAM at a
constant learning rate; log training loss vs iteration per width and the fitted slope per
width -> ``<results>/figures/linear_convergence.png``, ``<results>/tables/linear_convergence.md``.
Done runs are skipped (the store is keyed by config), so a command can be re-run to redraw.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from domains import ConfigError, MissingDataError, Workload, create_workload
from results.store import Store, StoreError
from results.theory_figures import linear_convergence_figure, patch_heatmap
from runners.engine.cli import Parser, UsageError
from runners.engine.theory_experiments import (
    interpolation,
    linear_stability,
    matrix_factorization,
    one_d_relu,
    smoothness_pl,
)
from runners.engine.theory_experiments.common import parse_seeds, run_configs, train_all
from runners.engine.train import Execution
from samcore import WidthError, parse_widths

# issue 22's experiments: subcommand -> module (add_parser, run, SEEDS)
EXPERIMENTS = {
    "one-d-relu": one_d_relu,
    "linear-stability": linear_stability,
    "matrix-factorization": matrix_factorization,
    "interpolation": interpolation,
}

# Grids (signal strength ||mu||, dimension d) per preset: minutes on a CPU core for quick.
PATCH_GRIDS: dict[str, tuple[tuple[float, ...], tuple[int, ...]]] = {
    "smoke": ((1.0, 4.0), (32, 64)),
    "quick": ((0.5, 1.0, 2.0, 4.0), (250, 1000, 4000, 16000)),
    "paper": ((0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0), (250, 500, 1000, 2000, 4000, 8000, 16000)),
}

# The linear-convergence problem: 256 noiseless examples (every student width has >= 10k
# parameters: overparameterized), full batch, constant LR below 2/lambda_max of the widest
# student at init (lambda_max grows with h: regression.py's docstring), no warm-up. Measured:
# lr 0.02 sent SAM (rho 0.01) at 8x over the edge (its loss jumped 0.05 -> 0.4 in 20 steps).
LINEAR_CONVERGENCE: dict[str, Any] = {
    "noise_std": 0.0,
    "num_train": 256,
    "batch_size": 256,
    "num_val": 256,
    "num_test": 256,
    "lr_schedule": "constant",
    "warmup_steps": 0,
    "learning_rate": 0.01,
    "num_epochs": 500,
    "eval_every": 100,
}


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="theory.py", description=__doc__.split("\n\n")[0], allow_abbrev=False)
    sub = p.add_subparsers(dest="experiment", required=True)
    heat = sub.add_parser("patch-heatmap", help="signal strength x dimension, GD vs SAM")
    heat.add_argument("--preset", default="quick", choices=tuple(PATCH_GRIDS))
    heat.add_argument("--rho", type=float, default=None, help="SAM radius (default: workload's)")
    lin = sub.add_parser("linear-convergence", help="log training loss vs iteration per width")
    lin.add_argument("--widths", default="1x,2x,4x,8x", help="student widths (1x = 100 hidden)")
    lin.add_argument("--rho", type=float, default=0.01, help="SAM radius (default 0.01)")
    lin.add_argument("--steps", type=int, default=None, help="full-batch steps (default 500)")
    lin.add_argument(
        "--fit-from", type=float, default=0.5, help="fit the slope from this fraction of steps"
    )
    parsers = [(heat, "0"), (lin, "0")]
    parsers += [(module.add_parser(sub), module.SEEDS) for module in EXPERIMENTS.values()]
    for s, seeds in parsers:
        s.add_argument("--results", default="results", help="results folder (default results/)")
        s.add_argument("--seeds", default=seeds, help=f"comma list of seeds (default {seeds})")
        s.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _describe(workload: Workload) -> str:
    c = workload.config
    if workload.name == "synthetic-patch-cnn":
        return f"||mu|| {c.signal_strength:g} d {c.dim}"
    return f"lr {c.learning_rate:g} n {c.num_train}"


def patch_heatmap_cmd(args: argparse.Namespace, store: Store, ex: Execution) -> int:
    mus, dims = PATCH_GRIDS[args.preset]
    seeds, failures = parse_seeds(args.seeds), 0
    for mu in mus:
        for d in dims:
            workload = create_workload(
                "synthetic-patch-cnn", args.preset, signal_strength=mu, dim=d
            )
            workload.setup_data(Path("."), torch.device("cpu"))
            rho = workload.config.rho if args.rho is None else args.rho
            failures += train_all(
                workload,
                run_configs(workload, args.preset, 1.0, seeds, rho),
                store,
                ex,
                _describe(workload),
            )[0]
    path = patch_heatmap(store, ex.results_dir, width=1.0)
    print(f"wrote {path}")
    return 1 if failures else 0


def linear_convergence_cmd(args: argparse.Namespace, store: Store, ex: Execution) -> int:
    overrides = dict(LINEAR_CONVERGENCE)
    if args.steps is not None:
        overrides.update(num_epochs=args.steps, eval_every=args.steps)
    workload = create_workload("synthetic-regression", "paper", **overrides)
    widths = parse_widths(args.widths, workload.widths)
    seeds = parse_seeds(args.seeds)
    workload.setup_data(Path("."), torch.device("cpu"))
    failures = 0
    for w in widths:
        failures += train_all(
            workload,
            run_configs(workload, "paper", w, seeds, args.rho),
            store,
            ex,
            _describe(workload),
        )[0]
    fig, table = linear_convergence_figure(store, ex.results_dir, fit_from=args.fit_from)
    print(table.read_text())
    print(f"wrote {fig} and {table}")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    if (argv := sys.argv[1:] if argv is None else argv)[:1] == ["smoothness-pl"]:  # issue 22
        return smoothness_pl.main(argv[1:])
    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "rho", None) is not None and not args.rho >= 0:
            raise UsageError(f"--rho must be >= 0, got {args.rho}")
        parse_seeds(args.seeds)
        if args.experiment == "linear-convergence":
            parse_widths(args.widths, tuple(float(k) for k in range(1, 11)))
            if args.steps is not None and args.steps < 2:
                raise UsageError(f"--steps must be >= 2, got {args.steps}")
            if not 0 <= args.fit_from < 1:
                raise UsageError(f"--fit-from must be in [0, 1), got {args.fit_from}")
        if args.experiment == "interpolation":
            interpolation.check(args)
        store = Store(Path(args.results) / "runs.sqlite")
    except (UsageError, WidthError, StoreError, ConfigError, ValueError) as exc:
        print(f"theory.py: error: {exc}", file=sys.stderr)
        return 2
    ex = Execution(results_dir=Path(args.results), progress=not args.no_progress)
    run = {"patch-heatmap": patch_heatmap_cmd, "linear-convergence": linear_convergence_cmd}
    run.update({name: module.run for name, module in EXPERIMENTS.items()})
    try:
        return run[args.experiment](args, store, ex)
    except (UsageError, WidthError, ConfigError, MissingDataError) as exc:
        print(f"theory.py: error: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main())
