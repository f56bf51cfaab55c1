"""The one way run configs are made: a workload's grid of widths x optimizers x rhos x seeds.

Used by ``runners/run.py`` (a grid from command-line flags) and ``runners/sweep.py`` (a grid
per entry of a sweep spec), so the same experiment always gets the same ``RunConfig`` and
therefore the same run id in the store, whichever command asked for it.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from domains import SizedByData, Workload
from runners.engine.config import OPTIMIZER_CHOICES, RunConfig, run_options
from samcore import BASE_OPTIMIZERS, WidthError, format_width

__all__ = [
    "PlanError",
    "check_widths",
    "optimizer_names",
    "expand_grid",
    "iter_grid",
    "seed_groups",
]


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
    sam_starts: Sequence[float] | None = None,
    **options: Any,
) -> list[RunConfig]:
    """``iter_grid``'s runs as a list (every run checked before any is used)."""
    return list(
        iter_grid(
            workload,
            preset,
            widths=widths,
            optimizers=optimizers,
            rhos=rhos,
            seeds=seeds,
            sam_starts=sam_starts,
            **options,
        )
    )


def iter_grid(
    workload: Workload,
    preset: str,
    *,
    widths: Sequence[float],
    optimizers: Sequence[str],
    rhos: Sequence[float],
    seeds: Sequence[int],
    sam_starts: Sequence[float] | None = None,
    **options: Any,
) -> Iterator[RunConfig]:
    """Every (width, optimizer, rho, grid option values, seed) of one workload config as a
    RunConfig, in that order.

    ``optimizers`` are OPTIMIZER_CHOICES (``base``/``both`` resolved against the workload's
    base optimizer); rhos apply to SAM runs only (a base run has rho 0). ``options`` are
    RunConfig's run-level options by name (``runners.engine.config.option``): a grid option takes a
    list (one SAM run per value), the others one value; SAM-only options are at their default
    in base runs. ``sam_starts`` is the list form of ``sam_start``. A generator: the grid's
    checks run at the first ``next``, a run's own as it is made (PlanError)."""
    c = workload.config
    check_widths(workload, widths)
    if not rhos or any(not (r >= 0) or math.isinf(r) for r in rhos):
        raise PlanError(f"rho must be finite and >= 0, got {list(rhos)}")
    if sam_starts is not None:
        options["sam_start"] = list(sam_starts)
    fields = {f.name: f for f in run_options()}
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise PlanError(f"unknown run options {unknown}; expected some of {sorted(fields)}")
    if workload.owns_loop and options.get("precision", "fp32") != "fp32":
        raise PlanError(f"{workload.name} trains in its own loop, in fp32 only")  # library's loop
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise PlanError(f"seeds must be distinct non-negative integers, got {list(seeds)}")
    grid = {n: list(v) for n, v in options.items() if fields[n].metadata["run_option"]["grid"]}
    fixed = {n: v for n, v in options.items() if n not in grid}
    sam_only = {n for n, f in fields.items() if f.metadata["run_option"]["sam_only"]}
    opts = optimizer_names(optimizers, c.optimizer)
    wl_config = dataclasses.asdict(c)
    for w in widths:
        for opt in opts:
            sam = opt == "sam"
            points = itertools.product(rhos, *grid.values()) if sam else [(0.0,)]
            for rho, *values in points:
                chosen = {**fixed, **dict(zip(grid, values))}
                if not sam:
                    chosen = {n: v for n, v in chosen.items() if n not in sam_only}
                for seed in seeds:
                    try:
                        cfg = RunConfig(
                            workload=workload.name,
                            preset=preset,
                            width=w,
                            optimizer=opt,
                            base_optimizer=c.optimizer if sam else opt,
                            seed=seed,
                            rho=float(rho),
                            workload_config=wl_config,
                            **chosen,
                        )
                    except (TypeError, ValueError) as exc:
                        raise PlanError(str(exc)) from None
                    yield cfg


def seed_groups(
    configs: Sequence[RunConfig], can_group: Callable[[RunConfig], bool]
) -> list[list[RunConfig]]:
    """``configs`` as groups of runs that differ only in their seed, where ``can_group(cfg)``
    says such runs may train together (a seed ensemble), else one run per group.

    Groups keep the order of their first run, and a group's runs their order in ``configs``;
    runs need not be adjacent (two spec entries may name seeds of one experiment)."""
    groups: list[list[RunConfig]] = []
    by_key: dict[str, list[RunConfig]] = {}
    for cfg in configs:
        if not can_group(cfg):
            groups.append([cfg])
            continue
        key = dataclasses.replace(cfg, seed=0).run_id  # the experiment without its seed
        if key in by_key:
            by_key[key].append(cfg)
        else:
            by_key[key] = [cfg]
            groups.append(by_key[key])
    return groups
