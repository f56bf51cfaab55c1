"""The forward pass of S stacked MLPs as batched matrix products, without ``vmap``.

A seed ensemble's parameters have a leading seed dim: Linear weights (S, out, in), biases
(S, out). For a model that is an ``nn.Sequential`` of ``nn.Linear``, ``nn.Flatten`` and
parameter-free elementwise activations, the stacked forward of input (S, B, ...) is one
``baddbmm`` per Linear and one call per activation. That is the same arithmetic as
``vmap(functional_call)`` (which lowers Linear to the same bmm), minus the per-call
re-parametrisation, pytree and batching-rule work, which on a small model is most of the
step (benchmarks/seed_ensemble.py measures the two side by side).

``stacked_forward_plan(model)`` returns None for any other architecture; the ensemble then
keeps the general ``vmap`` path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.autograd.function import once_differentiable

__all__ = ["StackedForward", "StackedLinear", "stacked_forward_plan"]

# Parameter-free and element by element, so they act the same with an extra leading seed dim.
ELEMENTWISE = (
    nn.ReLU,
    nn.GELU,
    nn.Tanh,
    nn.Sigmoid,
    nn.SiLU,
    nn.LeakyReLU,
    nn.ELU,
    nn.Softplus,
    nn.Identity,
)

# ("linear", (weight name, bias name or None)) | ("flatten", (start, end)) | ("elementwise", module)
Layer = tuple[str, object]


class StackedLinear(torch.autograd.Function):
    """y_s = x_s w_s^T + b_s for x (S, B, in), w (S, out, in), b (S, out) or None.

    ``baddbmm`` on ``w.transpose(1, 2)`` would give the same forward, but autograd then
    returns w's gradient as a transposed view, which the gradient accumulation copies to w's
    layout: on the MNIST MLP that copy was a fifth of the ensemble step. This backward
    writes dL/dw in w's layout directly, as ``F.linear``'s does for one model."""

    # The ctx-in-forward form: with a separate setup_context, apply costs ~60 us more per call
    # on this CPU (argument binding in Python), a third of the synthetic model's forward.
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        if b is None:
            return torch.bmm(x, w.transpose(1, 2))
        return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:
        x, w = ctx.saved_tensors
        needs_x, needs_w, needs_b = ctx.needs_input_grad
        grad_x = torch.bmm(grad, w) if needs_x else None  # (S, B, in)
        grad_w = torch.bmm(grad.transpose(1, 2), x) if needs_w else None  # (S, out, in)
        grad_b = grad.sum(1) if needs_b else None  # (S, out)
        return grad_x, grad_w, grad_b


class StackedForward:
    """``forward(params, x)``: the stacked model on x of shape (S, B, ...), as a plan of
    layers fixed at construction; ``params`` maps parameter names to (S, ...) tensors."""

    def __init__(self, layers: Sequence[Layer]) -> None:
        self.layers = list(layers)

    def __call__(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        num_seeds = x.shape[0]
        for kind, arg in self.layers:
            if kind == "linear":
                w_name, b_name = arg  # type: ignore[misc]
                w = params[w_name]  # (S, out, in)
                bias = params[b_name] if b_name is not None else None
                if x.dim() == 3:  # (S, B, in): the usual case, no reshapes
                    x = StackedLinear.apply(x, w, bias)
                else:  # (S, B, ..., in): Linear acts on the last dim
                    lead = x.shape[:-1]
                    h = x.reshape(num_seeds, -1, x.shape[-1])
                    x = StackedLinear.apply(h, w, bias).reshape(*lead, w.shape[1])
            elif kind == "flatten":
                start, end = arg  # type: ignore[misc]
                x = x.flatten(start, end)
            else:  # an elementwise module
                x = arg(x)  # type: ignore[operator]
        return x


def _shift(dim: int) -> int:
    """A per-seed dim index as an index into the stacked tensor (one more leading dim)."""
    return dim + 1 if dim >= 0 else dim


def stacked_forward_plan(model: nn.Module) -> StackedForward | None:
    """The stacked forward of ``model`` if it is a Sequential this module supports, else None."""
    if not isinstance(model, nn.Sequential) or model._forward_hooks or model._forward_pre_hooks:
        return None
    layers: list[Layer] = []
    for name, layer in model.named_children():
        if layer._forward_hooks or layer._forward_pre_hooks:
            return None
        if type(layer) is nn.Linear:
            layers.append(
                ("linear", (f"{name}.weight", f"{name}.bias" if layer.bias is not None else None))
            )
        elif type(layer) is nn.Flatten:
            layers.append(("flatten", (_shift(layer.start_dim), _shift(layer.end_dim))))
        elif type(layer) in ELEMENTWISE and not any(True for _ in layer.parameters()):
            layers.append(("elementwise", layer))
        else:
            return None
    return StackedForward(layers)
