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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from domains import MissingDataError, Workload, resolve_data_root
from results.store import Store, StoreError
from runners.checkpoint import load_checkpoint
from runners.cli import Parser, UsageError
from runners.config import RunConfig, workload_for_run
from runners.train import checkpoint_path
from samcore.hessian import hessian_moments, hessian_top_eigenvalues, hessian_trace, num_examples
from samcore.seeding import make_generator
from samcore.sharpness import average_case_sharpness, m_sharpness, worst_case_sharpness
from samcore.step import split_batch

# (norm, adaptive) of each worst-case measure, adaptive flag of each average-case one
WORST = {
    "worst_l2": ("l2", False),
    "worst_linf": ("linf", False),
    "worst_l2_adaptive": ("l2", True),
    "worst_linf_adaptive": ("linf", True),
}
AVERAGE = {"avg": False, "avg_adaptive": True}
MEASURES = ("lambda_max", "trace", "moments", *WORST, *AVERAGE)
DEFAULT_MEASURES = ("lambda_max", "trace", "worst_l2", "worst_linf_adaptive", "avg", "moments")
# Middles of the rho grids of Andriushchenko et al. (2023), sh/eval_sharpness_final.sh, for the
# CIFAR-10 ResNet-18: max_l2 {0.25..2}, max_linf {5e-4..4e-3}, adaptive {1e-3..8e-3}, avg_l2
# {0.05..0.4}. Sharpness values are only comparable at one rho: the rho is stored with each.
DEFAULT_RHO = {
    "worst_l2": 0.5,
    "worst_linf": 0.001,
    "worst_l2_adaptive": 1.0,
    "worst_linf_adaptive": 0.002,
    "avg": 0.1,
    "avg_adaptive": 0.1,
}


@dataclass(frozen=True)
class MeasureSettings:
    measures: tuple[str, ...] = DEFAULT_MEASURES
    """which measures to compute (names in MEASURES)"""
    n_examples: int = 1024
    """fixed training examples every measure is computed on"""
    m: int = 128
    """examples per batch of m-sharpness (one perturbation per batch, then averaged)"""
    rho: float | None = None
    """radius of every sharpness measure; None = DEFAULT_RHO per measure"""
    lanczos_iter: int = 64
    """most Hessian-vector products for lambda_max"""
    trace_samples: int = 50
    """Rademacher probes for the trace"""
    moment_samples: int = 20
    """Rademacher probes for the moments (2 Hessian-vector products each)"""
    apgd_iter: int = 20
    """Auto-PGD steps per batch of m (the paper's 20)"""
    avg_samples: int = 20
    """Gaussian draws per batch of m (antithetic pairs)"""
    seed: int = 0
    """seed of the example subset, the probes and the random starts"""


class MeasureError(Exception):
    """A run cannot be measured: reported as one line, exit code 2."""


def check_measurable(store: Store, results_dir: Path, run_id: str) -> RunConfig:
    """The run's config, or MeasureError if it is unknown, unfinished or has no checkpoint."""
    row = store.get_run(run_id)
    if row is None:
        raise MeasureError(f"no run {run_id!r} in {store.path}")
    if row["status"] != "done":
        raise MeasureError(f"run {run_id} is {row['status']}, not done: nothing final to measure")
    cfg = RunConfig.from_dict(row["config"]["run"])
    if workload_for_run(cfg).owns_loop:
        raise MeasureError(
            f"run {run_id} ({cfg.workload}) trains in its library's own loop (SB3): no "
            "workload loss to take a Hessian of"
        )
    if not checkpoint_path(results_dir, run_id).exists():
        raise MeasureError(
            f"run {run_id} has no checkpoint at {checkpoint_path(results_dir, run_id)}"
        )
    return cfg


def fixed_examples(workload: Workload, n: int, seed: int) -> list[Any]:
    """The first ``n`` training examples of a seeded shuffle, in the workload's batches."""
    split = getattr(workload, "split_batch", split_batch)
    batches, have = [], 0
    for batch in workload.train_batches(0, make_generator(seed, "sharpness/examples")):
        size = num_examples(batch)
        if have + size > n:
            batch = split(batch, n - have)[0][0]
            size = n - have
        batches.append(batch)
        have += size
        if have >= n:
            break
    return batches


def _rechunk(workload: Workload, batches: list[Any], m: int) -> list[Any]:
    split = getattr(workload, "split_batch", split_batch)
    return [chunk for b in batches for chunk, _ in split(b, m)]


def compute_measures(
    model: torch.nn.Module, workload: Workload, batches: list[Any], s: MeasureSettings
) -> dict[str, tuple[float, dict[str, Any]]]:
    """name -> (value, details) for every measure in ``s.measures``."""
    out: dict[str, tuple[float, dict[str, Any]]] = {}
    loss_fn, n = workload.loss, sum(num_examples(b) for b in batches)
    chunks = _rechunk(workload, batches, s.m)
    common = {"n_examples": n, "seed": s.seed}
    for name in s.measures:
        t0 = time.perf_counter()
        gen = make_generator(s.seed, f"sharpness/{name}")
        if name == "lambda_max":
            (value,) = hessian_top_eigenvalues(
                model, loss_fn, batches, k=1, max_iter=s.lanczos_iter, generator=gen
            )
            details = {"max_iter": s.lanczos_iter}
        elif name == "trace":
            value = hessian_trace(model, loss_fn, batches, s.trace_samples, gen)
            details = {"n_samples": s.trace_samples}
        elif name == "moments":
            moments = hessian_moments(model, loss_fn, batches, (1, 2, 3, 4), s.moment_samples, gen)
            details = {"n_samples": s.moment_samples, "seconds": time.perf_counter() - t0}
            for k, v in moments.items():
                out[f"moment_{k}"] = (v, {**common, **details, "order": k})
            continue
        elif name in WORST:
            rho = s.rho if s.rho is not None else DEFAULT_RHO[name]
            norm, adaptive = WORST[name]
            value = m_sharpness(
                worst_case_sharpness,
                model,
                loss_fn,
                chunks,
                rho=rho,
                norm=norm,
                adaptive=adaptive,
                n_iter=s.apgd_iter,
                generator=gen,
            )
            details = {"rho": rho, "m": s.m, "n_iter": s.apgd_iter}
        elif name in AVERAGE:
            rho = s.rho if s.rho is not None else DEFAULT_RHO[name]
            value = m_sharpness(
                average_case_sharpness,
                model,
                loss_fn,
                chunks,
                rho=rho,
                adaptive=AVERAGE[name],
                n_samples=s.avg_samples,
                generator=gen,
            )
            details = {"rho": rho, "m": s.m, "n_samples": s.avg_samples}
        else:
            raise MeasureError(f"unknown measure {name!r}; expected some of {', '.join(MEASURES)}")
        out[name] = (value, {**common, **details, "seconds": time.perf_counter() - t0})
    return out


def measure_run(
    store: Store,
    results_dir: Path,
    run_id: str,
    settings: MeasureSettings,
    device: str = "cpu",
    data_root: str | Path | None = None,
    workload: Workload | None = None,
) -> dict[str, float]:
    """Load a done run's final model, compute the measures, store them; returns name -> value.
    ``workload`` may be passed with its data already set up (``run.py --measure-sharpness``)."""
    cfg = check_measurable(store, results_dir, run_id)
    payload, warnings = load_checkpoint(checkpoint_path(results_dir, run_id))
    if payload is None or payload.get("run_id") != run_id:
        raise MeasureError(f"run {run_id}: no usable checkpoint ({'; '.join(warnings) or 'id'})")
    if workload is None:
        workload = workload_for_run(cfg)
        workload.setup_data(resolve_data_root(data_root), torch.device(device))
    torch.manual_seed(settings.seed)  # any random op in a model's forward (none in eval mode)
    model = workload.build_model(cfg.width)
    model.load_state_dict(payload["model"])
    model.to(device)
    batches = fixed_examples(workload, settings.n_examples, settings.seed)
    values = compute_measures(model, workload, batches, settings)
    for name, (value, details) in values.items():
        store.log_measure(run_id, name, value, details)
    return {name: value for name, (value, _) in values.items()}


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="sharpness.py", allow_abbrev=False, description=__doc__.split("\n\n")[0])
    p.add_argument("run_ids", nargs="*", metavar="RUN_ID", help="stored run ids")
    p.add_argument("--all", action="store_true", help="every done run of --workload")
    p.add_argument("--workload", default=None, help="with --all: the workload to measure")
    p.add_argument("--results", default="results", help="results folder (default results/)")
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
