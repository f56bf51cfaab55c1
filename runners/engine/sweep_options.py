"""Two small pieces of ``runners/sweep.py``'s interface: how many torch threads a local worker
uses, and what tells a sweep's runs apart beyond workload, optimizer, width and seed."""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections import defaultdict
from typing import Any

from runners.engine.config import RunConfig

__all__ = ["positive_int", "worker_threads", "run_details"]

# In the label already (executors.run_label), or the whole workload config (compared key by key).
_LABELLED = {"workload", "optimizer", "base_optimizer", "width", "seed", "rho", "workload_config"}


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (``--threads 0`` is a usage error, not a hang)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def worker_threads(requested: int | None, n_workers: int) -> int:
    """``--threads`` if given, else ``$OMP_NUM_THREADS`` (the user's own limit, e.g. on a
    machine shared with other jobs), else the cores split evenly over the workers."""
    if requested is not None:
        return requested
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, (os.cpu_count() or 1) // n_workers)


def run_details(configs: list[RunConfig]) -> dict[str, str]:
    """run id -> `` key=value ...``: the run-level settings off their default (adaptive,
    precision, ...) and the workload-config values that differ between runs of the same
    workload in this sweep (its grid axes, per-entry overrides); '' when there are none."""
    defaults = {f.name: f.default for f in dataclasses.fields(RunConfig) if f.name not in _LABELLED}
    varies = {  # a field without a default (preset) is shown where the sweep mixes values
        name: len({_show(getattr(c, name)) for c in configs}) > 1 for name in defaults
    }
    seen: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for c in configs:
        for key, value in c.workload_config.items():
            seen[c.workload][key].add(_show(value))
    out = {}
    for c in configs:
        parts = [
            f"{name}={_show(getattr(c, name))}"
            for name, default in defaults.items()
            if (varies[name] if default is dataclasses.MISSING else getattr(c, name) != default)
        ]
        parts += [
            f"{key}={_show(value)}"
            for key, value in sorted(c.workload_config.items())
            if len(seen[c.workload][key]) > 1
        ]
        out[c.run_id] = "".join(f" {p}" for p in parts)
    return out


def _show(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
