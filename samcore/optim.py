"""Base optimizers and LR schedules by name, with or without SAM around them.

Schedules are picklable callables of the step index (``LambdaLR`` factors), so a checkpointed
scheduler reloads exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from samcore.sam import SAM

__all__ = [
    "BASE_OPTIMIZERS",
    "base_optimizer_kwargs",
    "build_optimizer",
    "decay_param_groups",
    "LRSchedule",
    "build_scheduler",
]

BASE_OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
}


def decay_param_groups(
    params: list[tuple[torch.Tensor, int]], weight_decay: float, decay_norm_and_bias: bool
) -> list[dict]:
    """Optimizer groups from (parameter, ndim of one model's parameter) pairs: one group, or
    matrices decayed and 1-D parameters not. The ndim is passed so stacked seed ensembles
    split exactly as a single model does."""
    if decay_norm_and_bias or weight_decay == 0:
        return [{"params": [p for p, _ in params]}]
    # Biases and normalisation scales are 1-D; decaying them is the official code's pitfall.
    decay = [p for p, ndim in params if ndim > 1]
    no_decay = [p for p, ndim in params if ndim <= 1]
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


def base_optimizer_kwargs(
    name: str,
    lr: float,
    weight_decay: float,
    momentum: float,
    betas: tuple[float, float],
    eps: float,
) -> dict[str, Any]:
    """The keyword arguments of base optimizer ``name`` (SGD takes momentum, Adam betas)."""
    if name not in BASE_OPTIMIZERS:
        raise ValueError(
            f"unknown base optimizer {name!r}; expected one of {sorted(BASE_OPTIMIZERS)}"
        )
    kwargs: dict[str, Any] = {"lr": lr, "weight_decay": weight_decay}
    if name == "sgd":
        kwargs["momentum"] = momentum
    else:
        kwargs.update(betas=tuple(betas), eps=eps)
    return kwargs


def build_optimizer(
    model: nn.Module,
    name: str,
    *,
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    sam: bool = False,
    rho: float = 0.05,
    adaptive: bool = False,
    decay_norm_and_bias: bool = True,
) -> torch.optim.Optimizer:
    """``build_optimizer(model, "sgd", lr=0.1, momentum=0.9, sam=True, rho=0.05)``."""
    kwargs = base_optimizer_kwargs(name, lr, weight_decay, momentum, betas, eps)
    trainable = [(p, p.ndim) for p in model.parameters() if p.requires_grad]
    groups = decay_param_groups(trainable, weight_decay, decay_norm_and_bias)
    if sam:
        return SAM(groups, BASE_OPTIMIZERS[name], rho=rho, adaptive=adaptive, **kwargs)
    return BASE_OPTIMIZERS[name](groups, **kwargs)


@dataclass(frozen=True)
class LRSchedule:
    """Multiplicative LR factor at optimizer step ``t`` of ``total_steps``.

    kind: "constant" | "step" (x ``gamma`` at each fraction in ``milestones``) | "cosine"
        (to 0 at the end) | "linear" (to 0 at the end) | "inverse_sqrt" (Vaswani et al.:
        min(t/warmup, sqrt(warmup/t))).
    warmup_steps: linear warm-up from ~0 to 1 first (all kinds).
    """

    kind: str = "constant"
    total_steps: int = 1
    milestones: tuple[float, ...] = ()
    gamma: float = 0.1
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("constant", "step", "cosine", "linear", "inverse_sqrt"):
            raise ValueError(f"unknown lr schedule {self.kind!r}")

    def __call__(self, t: int) -> float:
        w = self.warmup_steps
        if self.kind == "inverse_sqrt":
            t1 = t + 1
            return min(t1 / w, math.sqrt(w / t1)) if w > 0 else 1 / math.sqrt(t1)
        if w > 0 and t < w:
            return (t + 1) / w
        progress = min(1.0, (t - w) / max(1, self.total_steps - w))
        if self.kind == "step":
            return self.gamma ** sum(t >= m * self.total_steps for m in self.milestones)
        if self.kind == "cosine":
            return 0.5 * (1 + math.cos(math.pi * progress))
        if self.kind == "linear":
            return 1.0 - progress
        return 1.0


def build_scheduler(
    optimizer: torch.optim.Optimizer, schedule: LRSchedule
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step LambdaLR; with SAM it acts on the shared ``param_groups``."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
