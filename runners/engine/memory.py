"""A run's memory, estimated before anything is written, against the machine's memory.

``--width 1e9x`` or ``--num_train=100000000`` used to pass validation, create an empty store
and end in an allocator traceback (issue 20, finding 8). The estimate is coarse on purpose:

- parameters (counted on the meta device, nothing allocated) x 4 bytes x 4 copies (weights,
  gradients, optimizer state, SAM's perturbation buffer);
- activations: batch_size x the model's per-example activation values x 4 bytes, where the
  per-example values are the sum of every leaf module's output size in a forward pass of one
  example on the meta device (what autograd keeps for the backward pass, roughly: views such
  as Flatten count too, in-place ops count as new tensors). The input's shape comes from the
  workload (``image_shape``, as (H, W, C), fed as (C, H, W); or the config's ``input_dim``);
  where it is unknown or the forward fails on meta (graphs, text), the approximation is the
  sum of the widest dimension of each layer (Linear out_features, Conv out_channels,
  Embedding dim): one position's worth, a lower bound for sequences and feature maps;
- both terms times the seed-ensemble size where seeds train as one vmapped model;
- the data where the workload's config says its size cheaply (generated or held examples x
  example size), held once whatever the ensemble.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from domains import SizedByData, Workload
from samcore import count_params, format_width

__all__ = [
    "MemoryCheckError",
    "machine_memory",
    "activation_values",
    "estimate_bytes",
    "check_memory",
]

BYTES_PER_VALUE = 4  # float32
PARAM_COPIES = 4  # weights, gradients, optimizer state (momentum), SAM's e(w) buffer


class MemoryCheckError(ValueError):
    """The estimate exceeds the machine's memory (one line; override: --no-memory-check)."""


def machine_memory() -> int:
    """Physical memory in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _meta_model(workload: Workload, width: float) -> nn.Module | None:
    try:
        with torch.device("meta"):  # built without allocating
            return workload.build_model(width)
    except (SizedByData, NotImplementedError, RuntimeError):  # sized by data, or no meta build
        return None  # unknown here: never build a model for real just to measure it


def _input_shape(workload: Workload) -> tuple[int, ...] | None:
    """One example's shape as the model takes it, where the workload says it without data."""
    shape = getattr(workload, "image_shape", None)
    if shape:
        h, w, c = shape  # stored (H, W, C); the model sees (C, H, W)
        return (c, h, w)
    dim = getattr(workload.config, "input_dim", None)
    return (dim,) if isinstance(dim, int) and dim > 0 else None


def _widest_dims(model: nn.Module) -> int:
    """The fallback: each layer's widest dimension (one position's activations)."""
    total = 0
    for m in model.modules():
        if isinstance(m, nn.Linear):
            total += m.out_features
        elif isinstance(m, nn.modules.conv._ConvNd):
            total += m.out_channels
        elif isinstance(m, nn.Embedding):
            total += m.embedding_dim
    return total


def activation_values(workload: Workload, model: nn.Module) -> int:
    """Activation values per example of ``model`` (a meta-device build): the leaf modules'
    output sizes in a meta forward pass of one example, else ``_widest_dims``."""
    shape = _input_shape(workload)
    if shape is None:
        return _widest_dims(model)
    total = 0

    def count(_module: nn.Module, _inputs: Any, output: Any) -> None:
        nonlocal total
        total += sum(t.numel() for t in _tensors(output))

    leaves = [m for m in model.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.no_grad():
            model(torch.empty(1, *shape, device="meta"))
    except Exception:  # a model that takes more than a tensor, or an op without a meta kernel
        return _widest_dims(model)
    finally:
        for h in hooks:
            h.remove()
    return total


def _tensors(output: Any) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, (tuple, list)):
        return [t for o in output for t in _tensors(o)]
    return []


def _model_bytes(workload: Workload, width: float) -> int:
    """Parameters' copies plus one batch's activations of one model at ``width``."""
    model = _meta_model(workload, width)
    if model is None:
        return 0
    params = count_params(model) * BYTES_PER_VALUE * PARAM_COPIES
    batch = getattr(workload.config, "batch_size", 1)
    return params + batch * activation_values(workload, model) * BYTES_PER_VALUE


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
    """(bytes, width) of the most demanding run: its parameters' copies and a batch's
    activations (times ``ensemble_size``, the seeds trained at once as one model) plus the
    data (held once)."""
    per_width = [(_model_bytes(workload, w), w) for w in widths]
    model, width = max(per_width, key=lambda pw: pw[0])
    return model * ensemble_size + _data_bytes(workload), width


def _gb(n: int) -> str:
    return f"{n / 1e9:,.3g} GB"


def check_memory(workload: Workload, widths: Sequence[float], ensemble_size: int = 1) -> None:
    """Raise MemoryCheckError when the estimate exceeds the machine's physical memory."""
    need, width = estimate_bytes(workload, widths, ensemble_size)
    have = machine_memory()
    if need > have:
        raise MemoryCheckError(
            f"{workload.name} at width {format_width(width)} needs about {_gb(need)} "
            f"(parameters x {PARAM_COPIES} copies + activations + data) but this machine "
            f"has {_gb(have)} of memory; use smaller --width/num_train, or --no-memory-check "
            "to run anyway"
        )
