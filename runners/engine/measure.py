"""Sharpness measures of a stored run's final model (the engine of runners/sharpness.py and of
run.py --measure-sharpness): settings, the fixed examples, the measures, and storing them.
See runners/sharpness.py for the measures and their defaults.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from domains import Workload, resolve_data_root
from results.store import Store
from runners.engine.checkpoint import load_checkpoint
from runners.engine.config import RunConfig, workload_for_run
from runners.engine.train import checkpoint_path
from samcore.hessian import hessian_moments, hessian_top_eigenvalues, hessian_trace, num_examples
from samcore.seeding import make_generator
from samcore.sharpness import average_case_sharpness, m_sharpness, worst_case_sharpness
from samcore.step import split_batch

__all__ = [
    "MEASURES",
    "DEFAULT_MEASURES",
    "DEFAULT_RHO",
    "MeasureSettings",
    "MeasureError",
    "check_measurable",
    "compute_measures",
    "fixed_examples",
    "measure_run",
]

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
