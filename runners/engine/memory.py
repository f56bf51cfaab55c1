"""A run's memory, estimated before anything is written, against the machine's memory.

``--width 1e9x`` or ``--num_train=100000000`` used to pass validation, create an empty store
and end in an allocator traceback (issue 20, finding 8). The estimate is coarse on purpose:
the parameters (counted on the meta device, nothing allocated) x 4 bytes x 4 copies
(weights, gradients, optimizer state, SAM's perturbation buffer), plus the data where the
workload's config says its size cheaply (generated or held examples x example size).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch

from domains import SizedByData, Workload
from samcore import count_params, format_width

__all__ = ["MemoryCheckError", "machine_memory", "estimate_bytes", "check_memory"]

BYTES_PER_VALUE = 4  # float32
PARAM_COPIES = 4  # weights, gradients, optimizer state (momentum), SAM's e(w) buffer


class MemoryCheckError(ValueError):
    """The estimate exceeds the machine's memory (one line; override: --no-memory-check)."""


def machine_memory() -> int:
    """Physical memory in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _param_bytes(workload: Workload, width: float) -> int:
    try:
        with torch.device("meta"):  # counts without allocating
            n = count_params(workload.build_model(width))
    except (SizedByData, NotImplementedError, RuntimeError):  # sized by data, or no meta build
        return 0  # unknown here: never build a model for real just to count it
    return n * BYTES_PER_VALUE * PARAM_COPIES


def _example_values(workload: Workload) -> int | None:
    """Values per example where the workload says so without reading data, else None."""
    shape = getattr(workload, "image_shape", None)
    if shape:
        return math.prod(shape)
    dim = getattr(workload.config, "input_dim", None)
    return dim if isinstance(dim, int) and dim > 0 else None


def _data_bytes(workload: Workload) -> int:
    """Examples named in the config (num_train/num_val/num_test; 0 = 'all', unknown here)
    x values per example x 4 bytes; 0 where either is unknown."""
    per_example = _example_values(workload)
    if per_example is None:
        return 0
    n = sum(
        v
        for key in ("num_train", "num_val", "num_test")
        if isinstance(v := getattr(workload.config, key, 0), int) and v > 0
    )
    return n * per_example * BYTES_PER_VALUE


def estimate_bytes(
    workload: Workload, widths: Sequence[float], ensemble_size: int = 1
) -> tuple[int, float]:
    """(bytes, width) of the most demanding run: its parameters' copies (times
    ``ensemble_size``, the seeds trained at once as one model) plus the data (held once)."""
    per_width = [(_param_bytes(workload, w), w) for w in widths]
    params, width = max(per_width, key=lambda pw: pw[0])
    return params * ensemble_size + _data_bytes(workload), width


def _gb(n: int) -> str:
    return f"{n / 1e9:,.3g} GB"


def check_memory(workload: Workload, widths: Sequence[float], ensemble_size: int = 1) -> None:
    """Raise MemoryCheckError when the estimate exceeds the machine's physical memory."""
    need, width = estimate_bytes(workload, widths, ensemble_size)
    have = machine_memory()
    if need > have:
        raise MemoryCheckError(
            f"{workload.name} at width {format_width(width)} needs about {_gb(need)} "
            f"(parameters x {PARAM_COPIES} copies + data) but this machine has {_gb(have)} "
            "of memory; use smaller --width/num_train, or --no-memory-check to run anyway"
        )
