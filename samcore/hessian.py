"""Curvature of the training loss from Hessian-vector products: top eigenvalues, trace,
spectral density, and moments tr(H^k)/n.

Every function takes ``loss_fn(model, batch) -> (mean loss, extras)`` (the ``Workload.loss``
contract) and a fixed list of batches. The loss differentiated is the example-weighted mean
over all the batches, sum_b n_b L_b / sum_b n_b, so the answer does not depend on how the
examples are cut into batches. The model is put in eval mode (BatchNorm uses its running
statistics, no dropout: the Hessian of a fixed function) and its mode is restored afterwards.
Only parameters with ``requires_grad`` count; vectors are flat, in ``model.parameters()``
order. Randomness (start vectors, probes) comes from ``generator`` only.

References: Lanczos with full reorthogonalisation (Golub & Van Loan, Matrix Computations,
sec. 10.1); Hutchinson's trace estimator with Rademacher probes; stochastic Lanczos
quadrature (Ghorbani, Krishnan & Xiao 2019, "An Investigation into Neural Net Optimization
via Hessian Eigenvalue Density"; Ubaru, Chen & Saad 2017).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = [
    "LossFn",
    "trainable_params",
    "num_examples",
    "batch_weights",
    "eval_mode",
    "weighted_loss",
    "hessian_vector_product",
    "hessian_top_eigenvalues",
    "hessian_trace",
    "SpectralDensity",
    "hessian_eigenvalue_density",
    "hessian_moments",
]

LossFn = Callable[[nn.Module, Any], tuple[torch.Tensor, dict[str, torch.Tensor]]]


def trainable_params(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def num_examples(batch: Any) -> int:
    """Examples in a batch: a PyG batch's graphs, else the leading dimension of its first tensor."""
    if hasattr(batch, "num_graphs"):
        return int(batch.num_graphs)
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0])
    if isinstance(batch, dict) and batch:
        return num_examples(next(iter(batch.values())))
    if isinstance(batch, (list, tuple)) and batch:
        return num_examples(batch[0])
    raise TypeError(f"cannot count the examples in a batch of type {type(batch).__name__}")


def batch_weights(batches: Sequence[Any]) -> list[float]:
    """Each batch's share of the examples: the weights of the example-mean loss."""
    if not batches:
        raise ValueError("need at least one batch")
    sizes = [num_examples(b) for b in batches]
    total = sum(sizes)
    return [n / total for n in sizes]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode inside the block; every submodule's own train/eval flag restored after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def weighted_loss(model: nn.Module, loss_fn: LossFn, batch: Any, weight: float) -> torch.Tensor:
    loss, _ = loss_fn(model, batch)
    return loss * weight


def _flat(tensors: Sequence[torch.Tensor | None], params: Sequence[torch.Tensor]) -> torch.Tensor:
    # A parameter the loss does not reach has a zero gradient, not a missing one.
    return torch.cat(
        [(t if t is not None else torch.zeros_like(p)).reshape(-1) for t, p in zip(tensors, params)]
    )


def _split(flat: torch.Tensor, params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    return [c.view_as(p) for c, p in zip(flat.split([p.numel() for p in params]), params)]


def _hvp(
    model: nn.Module, loss_fn: LossFn, batches: Sequence[Any], weights: list[float], v: torch.Tensor
) -> torch.Tensor:
    """H v by double backward, one batch at a time (memory of one batch's graph)."""
    params = trainable_params(model)
    vs = _split(v, params)
    out = torch.zeros_like(v)
    for batch, weight in zip(batches, weights):
        loss = weighted_loss(model, loss_fn, batch, weight)
        grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        dot = sum((g * u).sum() for g, u in zip(grads, vs) if g is not None)
        if not isinstance(dot, torch.Tensor) or not dot.requires_grad:
            continue  # the loss is linear in every parameter: H = 0 for this batch
        hv = torch.autograd.grad(dot, params, allow_unused=True)
        out += _flat(hv, params)
    return out


def hessian_vector_product(
    model: nn.Module, loss_fn: LossFn, batches: Sequence[Any], vector: torch.Tensor
) -> torch.Tensor:
    """H v for the example-mean loss over ``batches``; ``vector`` flat over the trainable
    parameters (``model.parameters()`` order)."""
    n = sum(p.numel() for p in trainable_params(model))
    if vector.numel() != n:
        raise ValueError(f"vector has {vector.numel()} entries, the model {n} trainable params")
    with eval_mode(model):
        return _hvp(model, loss_fn, batches, batch_weights(batches), vector.reshape(-1))


def _param_like(model: nn.Module) -> tuple[int, torch.dtype, torch.device]:
    params = trainable_params(model)
    if not params:
        raise ValueError("the model has no trainable parameters")
    return sum(p.numel() for p in params), params[0].dtype, params[0].device


def _rademacher(n: int, generator: torch.Generator | None, dtype, device) -> torch.Tensor:
    signs = torch.randint(0, 2, (n,), generator=generator).to(dtype) * 2 - 1
    return signs.to(device)


def _lanczos(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    v0: torch.Tensor,
    num_steps: int,
    on_step: Callable[[torch.Tensor, torch.Tensor], bool] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lanczos from ``v0`` with full reorthogonalisation; returns the tridiagonal's (alpha,
    beta) in float64. ``on_step(alpha, beta)`` may stop the iteration early by returning True.

    Full reorthogonalisation (twice, "twice is enough") keeps the basis orthogonal in finite
    precision, so converged Ritz values do not reappear as spurious copies."""
    basis = [v0 / v0.norm()]
    alphas: list[float] = []
    betas: list[float] = []
    for j in range(num_steps):
        w = matvec(basis[j])
        alpha = torch.dot(w, basis[j])
        alphas.append(alpha.item())
        V = torch.stack(basis)  # (j+1, n)
        for _ in range(2):
            w = w - V.T @ (V @ w)
        beta = w.norm().item()
        a, b = torch.tensor(alphas, dtype=torch.float64), torch.tensor(betas, dtype=torch.float64)
        if j + 1 == num_steps or beta <= 1e-10 * max(1.0, abs(alphas[-1])):
            return a, b  # an invariant subspace was found: the Ritz values are exact
        if on_step is not None and on_step(a, torch.cat([b, torch.tensor([beta])])):
            return a, b
        betas.append(beta)
        basis.append(w / beta)
    return torch.tensor(alphas, dtype=torch.float64), torch.tensor(betas, dtype=torch.float64)


def _tridiagonal(alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    return torch.diag(alpha) + torch.diag(beta, 1) + torch.diag(beta, -1)


def hessian_top_eigenvalues(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Sequence[Any],
    k: int = 1,
    max_iter: int = 64,
    tol: float = 1e-4,
    generator: torch.Generator | None = None,
) -> list[float]:
    """The ``k`` largest (algebraic) Hessian eigenvalues, largest first, by Lanczos.

    Stops when each of the top-k Ritz pairs has residual ||H y - theta y|| = |beta_m s_m| below
    ``tol * max(|theta_1|, 1e-12)``, or after ``max_iter`` Hessian-vector products. Memory:
    ``max_iter`` vectors of the parameter count."""
    n, dtype, device = _param_like(model)
    if not 1 <= k <= n:
        raise ValueError(f"k must be in 1..{n}, got {k}")
    v0 = torch.randn(n, generator=generator, dtype=torch.float64).to(dtype).to(device)

    def converged(alpha: torch.Tensor, beta: torch.Tensor) -> bool:
        if len(alpha) < k:
            return False
        theta, s = torch.linalg.eigh(_tridiagonal(alpha, beta[:-1]))
        residual = (beta[-1] * s[-1, -k:]).abs()  # |beta_m * last component| of the top k
        return bool((residual <= tol * max(theta[-1].abs().item(), 1e-12)).all())

    with eval_mode(model):
        weights = batch_weights(batches)
        alpha, beta = _lanczos(
            lambda v: _hvp(model, loss_fn, batches, weights, v), v0, min(max_iter, n), converged
        )
    theta = torch.linalg.eigvalsh(_tridiagonal(alpha, beta))
    return theta.flip(0)[:k].tolist()


def hessian_trace(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Sequence[Any],
    n_samples: int = 100,
    generator: torch.Generator | None = None,
) -> float:
    """Hutchinson's estimate of tr(H): the mean of v^T H v over Rademacher probes v.

    Unbiased; its variance per probe is 2 * sum_{i != j} H_ij^2 (exact for a diagonal H)."""
    return (
        hessian_moments(model, loss_fn, batches, (1,), n_samples, generator)[1]
        * (_param_like(model)[0])
    )


def hessian_moments(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Sequence[Any],
    orders: Sequence[int] = (1, 2, 3, 4),
    n_samples: int = 100,
    generator: torch.Generator | None = None,
) -> dict[int, float]:
    """Normalised spectral moments tr(H^k)/n = mean(lambda_i^k) for each order k, n the number
    of trainable parameters, by Hutchinson on H^k: v^T H^k v = (H^a v)·(H^b v), a + b = k,
    so order K costs ceil(K/2) Hessian-vector products per probe (the main paper's Hessian
    moments, compared across widths for base and SAM solutions)."""
    if not orders or min(orders) < 1:
        raise ValueError(f"orders must be positive integers, got {tuple(orders)}")
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    n, dtype, device = _param_like(model)
    half = math.ceil(max(orders) / 2)
    sums = {k: 0.0 for k in orders}
    with eval_mode(model):
        weights = batch_weights(batches)
        for _ in range(n_samples):
            powers = [_rademacher(n, generator, dtype, device)]  # H^0 v, H^1 v, ...
            for _ in range(half):
                powers.append(_hvp(model, loss_fn, batches, weights, powers[-1]))
            for k in orders:
                sums[k] += torch.dot(powers[k // 2], powers[k - k // 2]).item()
    return {k: sums[k] / (n_samples * n) for k in orders}


@dataclass(frozen=True)
class SpectralDensity:
    """Stochastic Lanczos quadrature of the Hessian's eigenvalue distribution.

    ``nodes[i]`` and ``weights[i]`` (probe i) form a quadrature rule for the spectral measure
    (1/n) sum_j delta(lambda - lambda_j); each probe's weights sum to 1. ``density`` is the
    probe average broadened by Gaussians of std ``sigma`` and evaluated on ``grid``."""

    nodes: torch.Tensor  # (probes, steps), float64
    weights: torch.Tensor  # (probes, steps), float64
    grid: torch.Tensor  # (points,)
    density: torch.Tensor  # (points,)
    sigma: float

    def moment(self, k: int) -> float:
        """The quadrature's estimate of mean(lambda^k) = tr(H^k)/n."""
        return (self.weights * self.nodes.pow(k)).sum(1).mean().item()


def hessian_eigenvalue_density(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Sequence[Any],
    n_probes: int = 1,
    n_steps: int = 80,
    grid_points: int = 1000,
    sigma: float | None = None,
    generator: torch.Generator | None = None,
) -> SpectralDensity:
    """SLQ: per Rademacher probe, ``n_steps`` Lanczos steps; the tridiagonal's eigenvalues are
    the nodes and the squared first components of its eigenvectors the weights (Gauss
    quadrature, exact for polynomials of degree < 2 * n_steps). ``sigma`` defaults to 1% of the
    node range; the grid spans the nodes plus 5 sigma each side."""
    n, dtype, device = _param_like(model)
    steps = min(n_steps, n)
    nodes, weights = [], []
    with eval_mode(model):
        w = batch_weights(batches)
        for _ in range(n_probes):
            v0 = _rademacher(n, generator, dtype, device)
            alpha, beta = _lanczos(lambda v: _hvp(model, loss_fn, batches, w, v), v0, steps)
            theta, s = torch.linalg.eigh(_tridiagonal(alpha, beta))
            # an early invariant subspace gives fewer nodes: pad with zero-weight copies
            pad = steps - len(theta)
            nodes.append(torch.cat([theta, theta[-1:].repeat(pad)]))
            weights.append(torch.cat([s[0] ** 2, torch.zeros(pad, dtype=torch.float64)]))
    nodes_t, weights_t = torch.stack(nodes), torch.stack(weights)
    lo, hi = nodes_t.min().item(), nodes_t.max().item()
    if sigma is None:
        sigma = max(0.01 * (hi - lo), 1e-12 * max(abs(lo), abs(hi), 1.0))
    grid = torch.linspace(lo - 5 * sigma, hi + 5 * sigma, grid_points, dtype=torch.float64)
    gauss = torch.exp(-0.5 * ((grid[:, None, None] - nodes_t[None]) / sigma) ** 2)
    density = (gauss * weights_t[None]).sum(-1).mean(-1) / (sigma * math.sqrt(2 * math.pi))
    return SpectralDensity(nodes_t, weights_t, grid, density, sigma)
