"""Hessian eigenvalues, trace, moments and density against exact answers: the full Hessian of a
tiny MLP from torch.autograd.functional.hessian, and quadratics with known spectra."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from samcore.hessian import (
    hessian_eigenvalue_density,
    hessian_moments,
    hessian_top_eigenvalues,
    hessian_trace,
    hessian_vector_product,
)


class Quadratic(nn.Module):
    """L(w) = 0.5 w^T A w; the batch only counts as one example."""

    def __init__(self, A: torch.Tensor, w: torch.Tensor | None = None) -> None:
        super().__init__()
        self.A = A
        self.w = nn.Parameter(torch.zeros(len(A), dtype=A.dtype) if w is None else w.clone())


def quad_loss(model, batch):
    return 0.5 * model.w @ model.A @ model.w, {}


def random_spectrum_matrix(eigs, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigs), len(eigs), generator=gen, dtype=torch.float64))
    return q @ torch.diag(torch.tensor(eigs, dtype=torch.float64)) @ q.T


def mlp_problem():
    """A 3-4-2 tanh MLP (26 params, float64) on 10 examples cut into batches of 6 and 4."""
    gen = torch.Generator().manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x = torch.randn(10, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(10, 2, generator=gen, dtype=torch.float64)

    def loss_fn(m, batch):
        bx, by = batch
        return (m(bx) - by).pow(2).sum(1).mean(), {}

    batches = [(x[:6], y[:6]), (x[6:], y[6:])]
    # The exact Hessian of the mean loss over all 10 examples, computed independently.
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def full_loss(flat):
        chunks = flat.split([math.prod(s) for s in shapes])
        params = {n: c.view(s) for n, c, s in zip(names, chunks, shapes)}
        return (functional_call(model, params, (x,)) - y).pow(2).sum(1).mean()

    H = torch.autograd.functional.hessian(full_loss, flat0)
    return model, loss_fn, batches, H


def test_hvp_matches_the_full_hessian_over_unequal_batches():
    model, loss_fn, batches, H = mlp_problem()
    v = torch.randn(len(H), dtype=torch.float64)
    torch.testing.assert_close(hessian_vector_product(model, loss_fn, batches, v), H @ v)


def test_lanczos_top_eigenvalues_of_an_mlp_hessian():
    model, loss_fn, batches, H = mlp_problem()
    exact = torch.linalg.eigvalsh(H).flip(0)[:3].tolist()
    gen = torch.Generator().manual_seed(0)
    got = hessian_top_eigenvalues(model, loss_fn, batches, k=3, tol=1e-10, generator=gen)
    assert got == pytest.approx(exact, rel=1e-8, abs=1e-10)


def test_lanczos_on_a_quadratic_with_a_known_spectrum():
    eigs = [10.0, 7.0, 3.0, 1.0, 0.5, -2.0] + [0.1] * 30  # negative and repeated eigenvalues
    model = Quadratic(random_spectrum_matrix(eigs))
    got = hessian_top_eigenvalues(model, quad_loss, [torch.zeros(1)], k=2, tol=1e-12)
    assert got == pytest.approx([10.0, 7.0], rel=1e-10)


def test_hutchinson_trace_within_its_statistical_error():
    model, loss_fn, batches, H = mlp_problem()
    n_samples = 500
    # Var(v^T H v) for Rademacher v is 2 * sum_{i != j} H_ij^2.
    var = 2 * (H.pow(2).sum() - H.diag().pow(2).sum()).item()
    gen = torch.Generator().manual_seed(3)
    est = hessian_trace(model, loss_fn, batches, n_samples=n_samples, generator=gen)
    assert abs(est - H.trace().item()) < 5 * math.sqrt(var / n_samples)
    assert var > 0  # the tolerance is not vacuous


def test_hutchinson_is_exact_for_a_diagonal_hessian():
    eigs = torch.tensor([5.0, 3.0, -1.0, 0.25], dtype=torch.float64)
    model = Quadratic(torch.diag(eigs))
    assert hessian_trace(model, quad_loss, [torch.zeros(1)], n_samples=1) == pytest.approx(7.25)
    moments = hessian_moments(model, quad_loss, [torch.zeros(1)], (1, 2, 3, 4), n_samples=1)
    for k in (1, 2, 3, 4):
        assert moments[k] == pytest.approx(eigs.pow(k).mean().item(), rel=1e-12)


def test_moments_of_an_mlp_hessian_within_statistical_error():
    model, loss_fn, batches, H = mlp_problem()
    n, n_samples = len(H), 400
    gen = torch.Generator().manual_seed(4)
    got = hessian_moments(model, loss_fn, batches, (2, 3), n_samples=n_samples, generator=gen)
    for k in (2, 3):
        Hk = torch.linalg.matrix_power(H, k)
        sd = math.sqrt(2 * (Hk.pow(2).sum() - Hk.diag().pow(2).sum()).item() / n_samples) / n
        assert abs(got[k] - Hk.trace().item() / n) < 5 * sd


def test_slq_density_integrates_to_one_and_recovers_the_spectrum():
    eigs = torch.tensor([4.0, 4.0, 2.0, 1.0, 1.0, 1.0, -0.5, 0.0], dtype=torch.float64)
    model = Quadratic(torch.diag(eigs))
    gen = torch.Generator().manual_seed(0)
    sld = hessian_eigenvalue_density(model, quad_loss, [torch.zeros(1)], n_probes=3, generator=gen)
    torch.testing.assert_close(sld.weights.sum(1), torch.ones(3, dtype=torch.float64))
    dx = (sld.grid[1] - sld.grid[0]).item()
    assert (sld.density.sum() * dx).item() == pytest.approx(1.0, abs=1e-3)
    # 5 distinct eigenvalues: Lanczos finds them all, with weights = multiplicity / n
    for lam, mult in ((4.0, 2), (2.0, 1), (1.0, 3), (-0.5, 1), (0.0, 1)):
        at = (sld.nodes - lam).abs() < 1e-8
        assert (sld.weights * at).sum(1).tolist() == pytest.approx([mult / 8] * 3, abs=1e-10)
    # Rademacher probes on a diagonal Hessian: every moment is exact
    for k in (1, 2, 3):
        assert sld.moment(k) == pytest.approx(eigs.pow(k).mean().item(), rel=1e-10)


def test_slq_first_moment_estimates_trace_over_n_for_an_mlp():
    model, loss_fn, batches, H = mlp_problem()
    n = len(H)
    gen = torch.Generator().manual_seed(5)
    sld = hessian_eigenvalue_density(
        model, loss_fn, batches, n_probes=100, n_steps=6, generator=gen
    )
    sd = math.sqrt(2 * (H.pow(2).sum() - H.diag().pow(2).sum()).item() / 100) / n
    assert abs(sld.moment(1) - H.trace().item() / n) < 5 * sd


def test_eval_mode_inside_and_train_mode_restored():
    model = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 1))
    model.double().train()
    model[1].eval()  # a mixed state must come back as it was
    x = torch.randn(16, 3, dtype=torch.float64)

    def loss_fn(m, batch):
        return m(batch).pow(2).mean(), {}

    n = sum(p.numel() for p in model.parameters())
    v = torch.randn(n, dtype=torch.float64)
    a = hessian_vector_product(model, loss_fn, [x], v)
    b = hessian_vector_product(model, loss_fn, [x], v)
    torch.testing.assert_close(a, b, rtol=0, atol=0)  # no dropout noise: eval mode
    assert [m.training for m in model.modules()] == [True, True, False, True, True]


def test_frozen_parameters_are_left_out():
    model, loss_fn, batches, H = mlp_problem()
    model[0].weight.requires_grad_(False)  # the first 12 entries of the flat vector
    v = torch.randn(len(H) - 12, dtype=torch.float64)
    torch.testing.assert_close(hessian_vector_product(model, loss_fn, batches, v), H[12:, 12:] @ v)
