"""Width multipliers: parsing "4x", scaling a base width, counting parameters.

A workload's width is a multiplier of its reference model ("1x" = the paper's standard model
where there is one). ``scale_width`` turns (base width, multiplier) into a layer size and
refuses sizes that would silently round away from the requested multiplier.
"""

from __future__ import annotations

import math
import re

import torch

__all__ = [
    "WidthError",
    "parse_width",
    "parse_widths",
    "format_width",
    "scale_width",
    "count_params",
]

_WIDTH_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?\s*[xX]?\s*$")


class WidthError(ValueError):
    """A width string that is not a positive multiplier such as ``4x`` or ``0.25x``."""


def parse_width(text: str | float | int) -> float:
    """``"4x" -> 4.0``; accepts ``0.25x``, ``4``, ``4.0x``. Anything else raises WidthError."""
    if isinstance(text, bool):
        raise WidthError(f"width must be a positive multiplier like '4x' or '0.25x', got {text!r}")
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        if not isinstance(text, str) or not _WIDTH_RE.match(text):
            raise WidthError(
                f"width must be a positive multiplier like '4x' or '0.25x', got {text!r}"
            )
        value = float(text.strip().rstrip("xX"))
    if not math.isfinite(value) or value <= 0:
        raise WidthError(f"width must be a positive multiplier like '4x' or '0.25x', got {text!r}")
    return value


def parse_widths(text: str, grid: tuple[float, ...]) -> list[float]:
    """Comma-separated widths, or ``all`` for the workload's grid."""
    if text.strip().lower() == "all":
        return list(grid)
    parts = [p for p in text.split(",")]
    if not parts or any(not p.strip() for p in parts):
        raise WidthError(f"width list must look like '1x,2x,4x' or 'all', got {text!r}")
    return [parse_width(p) for p in parts]


def format_width(multiplier: float) -> str:
    """``4.0 -> "4x"``, ``0.25 -> "0.25x"``: the short form when it is exact, else the shortest
    decimal that parses back to the same float (so run names and tables never merge widths)."""
    short = f"{multiplier:g}"
    if float(short) == multiplier:
        return short + "x"
    exact = repr(float(multiplier))
    return (exact[:-2] if exact.endswith(".0") else exact) + "x"


def scale_width(base: int, multiplier: float, multiple_of: int = 1) -> int:
    """Layer size for ``base`` scaled by ``multiplier``, rounded to a multiple of ``multiple_of``.

    Raises WidthError when the result would be below one unit, so that tiny multipliers
    never collapse a layer to zero silently.
    """
    if base <= 0 or multiple_of <= 0:
        raise ValueError(f"base and multiple_of must be positive, got {base}, {multiple_of}")
    raw = base * parse_width(multiplier)
    size = int(round(raw / multiple_of)) * multiple_of
    if size < multiple_of:
        raise WidthError(
            f"width {format_width(multiplier)} of base {base} gives {raw:g} units "
            f"(< {multiple_of}); use a larger width"
        )
    return size


def count_params(model: torch.nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters; shared tensors counted once. Works on meta tensors."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return total
