"""Measure the curvature and sharpness of stored runs' final models; store them next to the run.

    python runners/sharpness.py RUN_ID [RUN_ID ...] [--results results] [--device cuda]
    python runners/sharpness.py --all --workload synthetic-regression --measures lambda_max,moments
    python runners/run.py --domain synthetic --width 1x,10x --measure-sharpness   (after each run)

Measures (``--measures``, comma list): lambda_max (Lanczos), trace (Hutchinson), moments
(tr(H^k)/n, k = 1..4, stored as moment_1..moment_4), worst_l2, worst_linf, worst_l2_adaptive,
worst_linf_adaptive (Auto-PGD, m-sharpness), avg, avg_adaptive (Gaussian, m-sharpness).
All on the same fixed, seeded ``--n-examples`` training examples (first ones of a seeded
shuffle), the model in eval mode, loss = the workload's training loss. Sharpness is a loss
increase, computed per batch of ``--m`` examples and averaged (Andriushchenko et al. 2023 use
m = 128 over 1,024 examples). Each measure's default rho is the middle of that paper's grid for
its CIFAR-10 ResNet-18 (``DEFAULT_RHO``); ``--rho`` sets one rho for every sharpness measure.
Bad input (unknown run, no checkpoint, a workload that owns its loop) exits with code 2 and one
line on stderr before anything is measured or stored.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from domains import MissingDataError
from results.store import Store, StoreError
from runners.engine.cli import DEFAULT_RESULTS, Parser, UsageError
from runners.engine.measure import (
    DEFAULT_MEASURES,
    MEASURES,
    MeasureError,
    MeasureSettings,
    check_measurable,
    measure_run,
)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="sharpness.py", allow_abbrev=False, description=__doc__.split("\n\n")[0])
    p.add_argument("run_ids", nargs="*", metavar="RUN_ID", help="stored run ids")
    p.add_argument("--all", action="store_true", help="every done run of --workload")
    p.add_argument("--workload", default=None, help="with --all: the workload to measure")
    p.add_argument(
        "--results",
        default=str(DEFAULT_RESULTS),
        help=f"results folder (default {DEFAULT_RESULTS}/)",
    )
    p.add_argument("--measures", default=",".join(DEFAULT_MEASURES), help="comma list")
    p.add_argument("--n-examples", type=int, default=MeasureSettings.n_examples)
    p.add_argument("--m", type=int, default=MeasureSettings.m, help="examples per m-batch")
    p.add_argument("--rho", type=float, default=None, help="one rho for every sharpness measure")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default cpu)")
    p.add_argument("--data-root", default=None, help="data sets folder (default: $SAM_DATA)")
    return p


def _settings(args: argparse.Namespace) -> MeasureSettings:
    measures = tuple(m.strip() for m in args.measures.split(",") if m.strip())
    unknown = [m for m in measures if m not in MEASURES]
    if not measures or unknown:
        raise UsageError(f"--measures: unknown {unknown or 'none given'}; choose from {MEASURES}")
    if args.n_examples < 1 or args.m < 1:
        raise UsageError("--n-examples and --m must be >= 1")
    if args.rho is not None and not args.rho > 0:
        raise UsageError(f"--rho must be > 0, got {args.rho}")
    try:
        device = torch.device(args.device)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise UsageError(f"--device must be cpu, cuda or cuda:N, got {args.device!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {args.device}: no CUDA device is available on this machine")
    return MeasureSettings(measures, args.n_examples, args.m, args.rho, seed=args.seed)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        settings = _settings(args)
        if args.all == bool(args.run_ids) or (args.all and not args.workload):
            raise UsageError("give RUN_ID... or --all --workload NAME (not both)")
        results_dir = Path(args.results)
        db = results_dir / "runs.sqlite"
        if not db.exists():
            raise UsageError(f"no results store at {db}; run runners/run.py first")
        store = Store(db)
        run_ids = args.run_ids or [
            r["id"] for r in store.runs(workload=args.workload, status="done")
        ]
        if not run_ids:
            raise UsageError(f"no done runs of workload {args.workload!r} in {db}")
        for run_id in run_ids:  # every run checked before any is measured
            check_measurable(store, results_dir, run_id)
    except (UsageError, MeasureError, StoreError, ValueError, KeyError) as exc:
        print(f"sharpness.py: error: {exc}", file=sys.stderr)
        return 2
    for run_id in run_ids:
        t0 = time.perf_counter()
        try:
            values = measure_run(store, results_dir, run_id, settings, args.device, args.data_root)
        except (MeasureError, MissingDataError) as exc:
            print(f"sharpness.py: error: {exc}", file=sys.stderr)
            return 2
        shown = "  ".join(f"{k} {v:.4g}" for k, v in values.items())
        print(f"{run_id}  {shown}  ({time.perf_counter() - t0:.1f}s)")
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
