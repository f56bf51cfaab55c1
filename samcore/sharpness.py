"""Worst-case and average-case sharpness in weight space, standard and adaptive, as loss
increases (Andriushchenko, Croce, Müller, Hein & Flammarion 2023, "A Modern Look at the
Relationship between Sharpness and Generalization", sec. 2 and app. B).

    worst-case   S_max = max_{||delta / c|| <= rho} L(w + delta) - L(w)
    average-case S_avg = E_{delta ~ N(0, rho^2 diag(c^2))} L(w + delta) - L(w)

with c = 1 (standard) or c = |w| (adaptive: the perturbation is scaled elementwise by the
weights, so the measure is invariant to rescaling a ReLU layer up and the next one down), and
||.|| the l2 or l-infinity norm over all trainable parameters at once. m-sharpness: both are
computed per batch of m examples (one delta per batch) and averaged over the batches.

The maximisation is Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial
robustness...", sec. 3) in the scaled variable gamma = delta / c: step size 2*rho halved at
the checkpoints p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06) when
fewer than 75% of the steps since the last checkpoint increased the loss, or when neither the
step size nor the best loss changed; after a halving the iterate restarts from the best point.
Update: z = P(x + eta * s(grad)), x' = P(x + 0.75 (z - x) + 0.25 (x - x_prev)), with s the
normalised gradient (l2) or its sign (linf) and P the projection onto the ball. The start is a
random point on the l2 sphere / in the l-inf box (at a critical point the gradient is zero).
The model is evaluated in eval mode and its weights are restored bit for bit afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import nn

from samcore.hessian import LossFn, _flat, batch_weights, eval_mode, trainable_params

__all__ = [
    "apgd_checkpoints",
    "worst_case_sharpness",
    "average_case_sharpness",
    "m_sharpness",
    "smoothness_pl",
]

Norm = Literal["l2", "linf"]


def apgd_checkpoints(n_iter: int) -> list[int]:
    """Iterations at which Auto-PGD may halve its step size (Croce & Hein 2020, sec. 3.1)."""
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    # round first: 0.57 * 100 is 57.000000000000007 in floating point, and ceil would give 58
    its = {math.ceil(round(q * n_iter, 9)) for q in p[1:]}
    return sorted(i for i in its if i <= n_iter)


class _Perturbed:
    """Evaluates L(w + c * gamma) and its gradient in gamma; restores w exactly on exit."""

    def __init__(self, model: nn.Module, loss_fn: LossFn, batches: Sequence[Any], adaptive: bool):
        self.model, self.loss_fn, self.batches = model, loss_fn, batches
        self.weights = batch_weights(batches)
        self.params = trainable_params(model)
        self.w0 = [p.detach().clone() for p in self.params]
        flat_w = torch.cat([w.reshape(-1) for w in self.w0])
        self.scale = flat_w.abs() if adaptive else torch.ones_like(flat_w)

    def _set(self, gamma: torch.Tensor) -> None:
        delta = (self.scale * gamma).split([p.numel() for p in self.params])
        with torch.no_grad():
            for p, w, d in zip(self.params, self.w0, delta):
                p.copy_(w + d.view_as(p))

    def restore(self) -> None:
        with torch.no_grad():
            for p, w in zip(self.params, self.w0):
                p.copy_(w)

    def loss(self, gamma: torch.Tensor | None) -> float:
        if gamma is None:
            self.restore()
        else:
            self._set(gamma)
        with torch.no_grad():
            total = sum(
                self.loss_fn(self.model, b)[0].double() * w
                for b, w in zip(self.batches, self.weights)
            )
        return float(total)

    def loss_and_grad(self, gamma: torch.Tensor) -> tuple[float, torch.Tensor]:
        """L(w + c*gamma) and dL/dgamma = c * grad L(w + c*gamma)."""
        self._set(gamma)
        total, grads = 0.0, [torch.zeros_like(p) for p in self.params]
        for b, w in zip(self.batches, self.weights):
            loss = self.loss_fn(self.model, b)[0] * w
            gs = torch.autograd.grad(loss, self.params, allow_unused=True)
            for acc, g in zip(grads, gs):
                if g is not None:
                    acc += g
            total += loss.item()
        return total, self.scale * torch.cat([g.reshape(-1) for g in grads])


def _project(x: torch.Tensor, rho: float, norm: Norm) -> torch.Tensor:
    if norm == "linf":
        return x.clamp(-rho, rho)
    size = x.norm()
    return x * (rho / size) if size > rho else x


def _ascent_direction(g: torch.Tensor, norm: Norm) -> torch.Tensor:
    if norm == "linf":
        return g.sign()
    return g / (g.norm() + 1e-12)


def worst_case_sharpness(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Sequence[Any],
    rho: float,
    norm: Norm = "l2",
    adaptive: bool = False,
    n_iter: int = 20,
    generator: torch.Generator | None = None,
) -> float:
    """max over ||delta / c|| <= rho of L(w + delta) - L(w) on the example-mean loss of
    ``batches`` (one delta for all of them), by ``n_iter`` Auto-PGD steps. A lower bound on
    the true maximum; exact at the optimum."""
    if norm not in ("l2", "linf"):
        raise ValueError(f"norm must be l2 or linf, got {norm!r}")
    if not rho > 0:
        raise ValueError(f"rho must be > 0, got {rho}")
    checkpoints = set(apgd_checkpoints(n_iter))
    with eval_mode(model):
        f = _Perturbed(model, loss_fn, batches, adaptive)
        try:
            base = f.loss(None)
            n, like = f.scale.numel(), f.scale
            if norm == "l2":
                x = torch.randn(n, generator=generator, dtype=torch.float64).to(like)
                x = x * (rho / x.norm())
            else:
                x = ((torch.rand(n, generator=generator, dtype=torch.float64) * 2 - 1) * rho).to(
                    like
                )
            eta = 2 * rho
            fx, g = f.loss_and_grad(x)
            x_best, f_best = x.clone(), fx
            x_prev = x.clone()
            increases, last_cp, eta_at_cp, f_best_at_cp = 0, 0, eta, f_best
            for k in range(n_iter):
                z = _project(x + eta * _ascent_direction(g, norm), rho, norm)
                alpha = 1.0 if k == 0 else 0.75  # the first step has no momentum term
                x_new = _project(x + alpha * (z - x) + (1 - alpha) * (x - x_prev), rho, norm)
                f_new, g_new = f.loss_and_grad(x_new)
                increases += f_new > fx
                x_prev, x, fx, g = x, x_new, f_new, g_new
                if f_new > f_best:
                    x_best, f_best = x_new.clone(), f_new
                if k + 1 in checkpoints:
                    too_few = increases < 0.75 * (k + 1 - last_cp)
                    stalled = eta == eta_at_cp and f_best == f_best_at_cp
                    eta_at_cp, f_best_at_cp = eta, f_best
                    if too_few or stalled:
                        eta /= 2
                        x, x_prev = x_best.clone(), x_best.clone()
                        fx, g = f.loss_and_grad(x)
                    increases, last_cp = 0, k + 1
        finally:
            f.restore()
    return f_best - base


def average_case_sharpness(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Sequence[Any],
    rho: float,
    adaptive: bool = False,
    n_samples: int = 20,
    generator: torch.Generator | None = None,
) -> float:
    """E over delta ~ N(0, rho^2 diag(c^2)) of L(w + delta) - L(w), by ``n_samples`` draws
    taken in antithetic pairs (delta, -delta): unbiased, and the first-order term, which has
    mean zero but dominates the variance, cancels within each pair."""
    if not rho > 0:
        raise ValueError(f"rho must be > 0, got {rho}")
    if n_samples < 2 or n_samples % 2:
        raise ValueError(f"n_samples must be even and >= 2, got {n_samples}")
    with eval_mode(model):
        f = _Perturbed(model, loss_fn, batches, adaptive)
        try:
            base = f.loss(None)
            total = 0.0
            for _ in range(n_samples // 2):
                g = torch.randn(f.scale.numel(), generator=generator, dtype=torch.float64)
                g = (g * rho).to(f.scale)
                total += f.loss(g) + f.loss(-g)
        finally:
            f.restore()
    return total / n_samples - base


def m_sharpness(
    measure: Any, model: nn.Module, loss_fn: LossFn, batches: Sequence[Any], **kwargs: Any
) -> float:
    """The mean over ``batches`` (each of m examples) of ``measure`` computed on that batch
    alone: ``m_sharpness(worst_case_sharpness, model, loss_fn, chunks, rho=0.1)``."""
    if not batches:
        raise ValueError("need at least one batch")
    values = [measure(model, loss_fn, [b], **kwargs) for b in batches]
    return sum(values) / len(values)


# ---------------------------------------------------------------------- smoothness and PL
def _loss_and_grad(
    model: nn.Module, loss_fn: LossFn, batches: Sequence[Any], params: list[nn.Parameter]
) -> tuple[float, torch.Tensor]:
    """The example-mean loss over ``batches`` and its flat gradient (float64), batch by batch."""
    total, grad = 0.0, None
    for batch, weight in zip(batches, batch_weights(batches)):
        loss, _ = loss_fn(model, batch)
        g = _flat(torch.autograd.grad(loss * weight, params, allow_unused=True), params)
        grad = g.double() if grad is None else grad + g.double()
        total += weight * float(loss.detach())
    return total, grad


def smoothness_pl(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Sequence[Any],
    radius: float = 0.1,
    loss_floor: float = 0.0,
) -> dict[str, float]:
    """Local smoothness and Polyak-Lojasiewicz constants at the current weights (the paper's
    Fig. 21, Shin et al. UAI 2025 app. E, delta = 0.1; the "effective beta-smoothness" along
    the gradient of Santurkar et al. 2018, "How does batch normalization help optimization?",
    sec. 3.1):

        g = grad L(w),  delta = radius * g / ||g||
        smoothness  beta_hat = ||grad L(w + delta) - g|| / ||delta||
        PL ratio    mu_hat   = ||g||^2 / (2 (L(w) - L*)),  L* = ``loss_floor`` (0: the
                    cross-entropy and squared losses are >= 0, so this is a lower bound on
                    the ratio an exact L* would give)

    L is the example-mean loss over ``batches`` in eval mode (batch norm on its running
    statistics, no dropout: a deterministic function of w). For L = 1/2 w^T A w, beta_hat =
    ||A^2 w|| / ||A w|| and mu_hat = ||A w||^2 / (w^T A w), both = lambda on an eigenvector of
    A with eigenvalue lambda. Returns loss, grad_norm, smoothness, pl_ratio (nan where
    undefined: zero gradient, or L <= L*). The weights are restored bit for bit."""
    if not radius > 0:
        raise ValueError(f"radius must be > 0, got {radius}")
    params = trainable_params(model)
    saved = [p.detach().clone() for p in params]
    with eval_mode(model), torch.enable_grad():
        loss, g = _loss_and_grad(model, loss_fn, batches, params)
        g_norm = float(g.norm())
        smooth = math.nan
        if g_norm > 0:
            delta = radius * g / g_norm
            try:
                with torch.no_grad():
                    offset = 0
                    for p in params:
                        n = p.numel()
                        p.add_(delta[offset : offset + n].view_as(p).to(p.dtype))
                        offset += n
                _, g_moved = _loss_and_grad(model, loss_fn, batches, params)
            finally:
                with torch.no_grad():
                    for p, w in zip(params, saved):
                        p.copy_(w)
            smooth = float((g_moved - g).norm()) / radius
    excess = loss - loss_floor
    pl = g_norm**2 / (2 * excess) if excess > 0 else math.nan
    return {"loss": loss, "grad_norm": g_norm, "smoothness": smooth, "pl_ratio": pl}
