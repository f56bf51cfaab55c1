"""The one way run configs are made: a workload's grid of widths x optimizers x rhos x seeds.

Used by ``runners/run.py`` (a grid from command-line flags) and ``runners/sweep.py`` (a grid
per entry of a sweep spec), so the same experiment always gets the same ``RunConfig`` and
therefore the same run id in the store, whichever command asked for it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch

from domains import SizedByData, Workload
from runners.config import OPTIMIZER_CHOICES, PRECISIONS, PROTOCOLS, RunConfig
from samcore import BASE_OPTIMIZERS, WidthError, format_width

__all__ = ["PlanError", "check_widths", "optimizer_names", "expand_grid"]


class PlanError(ValueError):
    """A grid that cannot be run (width the model cannot take, rho < 0, bad flag)."""


def check_widths(workload: Workload, widths: Sequence[float]) -> None:
    """Fail now, not mid-grid, on a width the model cannot take (built on the meta device)."""
    for w in widths:
        try:
            with torch.device("meta"):
                workload.build_model(w)
        except SizedByData:  # the width was checked; the size waits for the data
            continue
        except (WidthError, ValueError) as exc:
            raise PlanError(f"width {format_width(w)}: {exc}") from None


def optimizer_names(choices: Sequence[str], base: str) -> list[str]:
    """``base`` -> the workload's base optimizer, ``both`` -> base and ``sam``; the rest as is."""
    if base not in BASE_OPTIMIZERS:
        raise PlanError(f"workload base optimizer {base!r} is not one of {sorted(BASE_OPTIMIZERS)}")
    names: list[str] = []
    for choice in choices:
        if choice not in OPTIMIZER_CHOICES:
            raise PlanError(f"unknown optimizer {choice!r}; expected one of {OPTIMIZER_CHOICES}")
        for name in {"base": [base], "both": [base, "sam"]}.get(choice, [choice]):
            if name not in names:
                names.append(name)
    return names


def expand_grid(
    workload: Workload,
    preset: str,
    *,
    widths: Sequence[float],
    optimizers: Sequence[str],
    rhos: Sequence[float],
    seeds: Sequence[int],
    adaptive: bool = False,
    m_sharpness: int = 0,
    micro_batch_size: int = 0,
    precision: str = "fp32",
    sam_starts: Sequence[float] = (0.0,),
    sam_end: float = 1.0,
    protocol: str = "best-val",
) -> list[RunConfig]:
    """Every (width, optimizer, rho, seed) of one workload config as a RunConfig, in that order.

    ``optimizers`` are OPTIMIZER_CHOICES (``base``/``both`` resolved against the workload's
    base optimizer); rhos apply to SAM runs only (a base run has rho 0), as do ``adaptive``,
    ``m_sharpness`` and the late-phase window (``sam_starts`` x ``sam_end``, fractions of
    training during which SAM is on). ``protocol`` says which stored test metric the
    experiment reports (best-val | final)."""
    c = workload.config
    check_widths(workload, widths)
    if not rhos or any(not (r >= 0) or math.isinf(r) for r in rhos):
        raise PlanError(f"rho must be finite and >= 0, got {list(rhos)}")
    if m_sharpness < 0 or micro_batch_size < 0:
        raise PlanError("m_sharpness and micro_batch_size must be >= 0")
    if precision not in PRECISIONS:
        raise PlanError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if workload.owns_loop and precision != "fp32":  # the library's loop runs in fp32
        raise PlanError(f"{workload.name} trains in its own loop, in fp32 only")
    if protocol not in PROTOCOLS:
        raise PlanError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise PlanError(f"seeds must be distinct non-negative integers, got {list(seeds)}")
    opts = optimizer_names(optimizers, c.optimizer)
    wl_config = dataclasses.asdict(c)
    plan = []
    for w in widths:
        for opt in opts:
            for rho, start in (
                [(r, st) for r in rhos for st in sam_starts] if opt == "sam" else [(0.0, 0.0)]
            ):
                for seed in seeds:
                    plan.append(
                        RunConfig(
                            workload=workload.name,
                            preset=preset,
                            width=w,
                            optimizer=opt,
                            base_optimizer=c.optimizer if opt == "sam" else opt,
                            seed=seed,
                            rho=float(rho),
                            adaptive=adaptive and opt == "sam",
                            m_sharpness=m_sharpness if opt == "sam" else 0,
                            micro_batch_size=micro_batch_size,
                            precision=precision,
                            sam_start=start,
                            sam_end=sam_end if opt == "sam" else 1.0,
                            protocol=protocol,
                            workload_config=wl_config,
                        )
                    )
    return plan
