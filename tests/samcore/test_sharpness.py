"""Worst-case and average-case sharpness of quadratics, where the answers are closed forms."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from samcore.sharpness import (
    apgd_checkpoints,
    average_case_sharpness,
    m_sharpness,
    worst_case_sharpness,
)
from tests.samcore.test_hessian import Quadratic, quad_loss, random_spectrum_matrix

ONE = [torch.zeros(1)]  # a batch of one (the quadratic ignores it)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_apgd_checkpoints_follow_croce_and_hein():
    # p = 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99 (next 1.05 is past the end)
    assert apgd_checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert apgd_checkpoints(20) == [5, 9, 12, 14, 16, 18, 19, 20]


def test_worst_case_l2_at_a_minimum_is_half_rho_squared_lambda_max():
    A = random_spectrum_matrix([4.0, 1.5, 1.0, 0.5, 0.1, 0.0])
    model = Quadratic(A)
    rho = 0.3
    got = worst_case_sharpness(model, quad_loss, ONE, rho, "l2", n_iter=20, generator=gen())
    assert got == pytest.approx(0.5 * rho**2 * 4.0, rel=1e-4)
    assert got <= 0.5 * rho**2 * 4.0 * (1 + 1e-12)  # never above the true maximum


def test_worst_case_linf_of_a_diagonal_quadratic():
    # max_{|d_i| <= rho} 0.5 a_i (w_i + d_i)^2 = 0.5 a_i (|w_i| + rho)^2, coordinate by coordinate
    a = torch.tensor([3.0, 1.0, 0.5, 2.0], dtype=torch.float64)
    w = torch.tensor([0.4, -1.0, 0.0, -0.2], dtype=torch.float64)
    model, rho = Quadratic(torch.diag(a), w), 0.05
    expected = (a * (rho * w.abs() + 0.5 * rho**2)).sum().item()
    got = worst_case_sharpness(model, quad_loss, ONE, rho, "linf", generator=gen())
    assert got == pytest.approx(expected, rel=1e-6)


def test_adaptive_linf_of_a_diagonal_quadratic():
    # |d_i| <= rho |w_i|: the worst point is w_i (1 + rho), so S = 0.5 sum a_i w_i^2 ((1+rho)^2 - 1)
    a = torch.tensor([3.0, 1.0, 0.5, 2.0], dtype=torch.float64)
    w = torch.tensor([0.4, -1.0, 0.3, -0.2], dtype=torch.float64)
    model, rho = Quadratic(torch.diag(a), w), 0.1
    expected = 0.5 * (a * w**2).sum().item() * ((1 + rho) ** 2 - 1)
    got = worst_case_sharpness(model, quad_loss, ONE, rho, "linf", adaptive=True, generator=gen())
    assert got == pytest.approx(expected, rel=1e-6)


def test_adaptive_l2_of_a_diagonal_quadratic_with_equal_curvature_per_weight():
    # d = |w| * g, ||g|| <= rho. With a_i w_i^2 = b for every i the loss at w + d is
    # 0.5 b sum_i (1 + s_i g_i)^2 (s_i = sign w_i), maximised by s_i g_i = rho / sqrt(n):
    # S = 0.5 b (2 rho sqrt(n) + rho^2).
    a = torch.tensor([4.0, 1.0, 0.25, 9.0, 2.0], dtype=torch.float64)
    signs = torch.tensor([1.0, -1.0, 1.0, -1.0, -1.0], dtype=torch.float64)
    b, rho, n = 0.3, 0.2, 5
    w = signs * math.sqrt(b) / a.sqrt()
    model = Quadratic(torch.diag(a), w)
    expected = 0.5 * b * (2 * rho * math.sqrt(n) + rho**2)
    got = worst_case_sharpness(model, quad_loss, ONE, rho, "l2", adaptive=True, generator=gen())
    assert got == pytest.approx(expected, rel=1e-5)


def test_average_case_is_half_rho_squared_trace_within_statistical_error():
    eigs = [3.0, 2.0, 1.0, 0.5, 0.5, 0.1]
    A = random_spectrum_matrix(eigs, seed=2)
    w = torch.linspace(-1, 1, 6, dtype=torch.float64)
    model, rho, n_samples = Quadratic(A, w), 0.1, 400
    # antithetic pairs leave 0.5 d^T A d per pair, variance 0.5 rho^4 tr(A^2)
    sd = math.sqrt(0.5 * rho**4 * sum(e * e for e in eigs) / (n_samples // 2))
    got = average_case_sharpness(model, quad_loss, ONE, rho, n_samples=n_samples, generator=gen())
    assert abs(got - 0.5 * rho**2 * sum(eigs)) < 5 * sd


def test_adaptive_average_case_scales_the_noise_by_the_weights():
    # d = |w| * N(0, rho^2 I): E[0.5 d^T A d] = 0.5 rho^2 sum_i A_ii w_i^2
    A = random_spectrum_matrix([2.0, 1.0, 0.5, 0.25], seed=3)
    w = torch.tensor([2.0, -0.5, 0.1, 1.0], dtype=torch.float64)
    model, rho, n_samples = Quadratic(A, w), 0.2, 400
    expected = 0.5 * rho**2 * (A.diag() * w**2).sum().item()
    Aw = torch.diag(w.abs()) @ A @ torch.diag(w.abs())
    sd = math.sqrt(0.5 * rho**4 * Aw.pow(2).sum().item() / (n_samples // 2))
    got = average_case_sharpness(
        model, quad_loss, ONE, rho, adaptive=True, n_samples=n_samples, generator=gen()
    )
    assert abs(got - expected) < 5 * sd


class PerBatchCurvature(nn.Module):
    """L_B(w) = 0.5 sum_i a_{B,i} w_i^2, a batch being the curvature row a_B of shape (1, n)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(n, dtype=torch.float64))


def curvature_loss(model, batch):
    return 0.5 * (batch[0] * model.w**2).sum(), {}


def test_m_sharpness_takes_the_max_per_batch_then_averages():
    model, rho = PerBatchCurvature(3), 0.5
    batches = [torch.tensor([[4.0, 0.0, 0.0]]), torch.tensor([[0.0, 0.0, 2.0]])]
    batches = [b.double() for b in batches]
    per_batch = m_sharpness(
        worst_case_sharpness, model, curvature_loss, batches, rho=rho, generator=gen()
    )
    assert per_batch == pytest.approx(0.5 * rho**2 * (4.0 + 2.0) / 2, rel=1e-4)
    joint = worst_case_sharpness(model, curvature_loss, batches, rho, generator=gen())
    assert joint == pytest.approx(0.5 * rho**2 * 2.0, rel=1e-4)  # max of the mean curvature


def test_weights_and_mode_restored_exactly():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Dropout(0.2), nn.Linear(6, 1)).train()
    x, y = torch.randn(12, 4), torch.randn(12, 1)

    def loss_fn(m, batch):
        return (m(batch[0]) - batch[1]).pow(2).mean(), {}

    before = [p.detach().clone() for p in model.parameters()]
    worst_case_sharpness(model, loss_fn, [(x, y)], 0.1, "linf", adaptive=True, generator=gen())
    average_case_sharpness(model, loss_fn, [(x, y)], 0.1, generator=gen())
    for p, b in zip(model.parameters(), before):
        assert torch.equal(p, b)
    assert all(m.training for m in model.modules())


def test_bad_arguments_are_errors():
    model = Quadratic(torch.eye(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="norm"):
        worst_case_sharpness(model, quad_loss, ONE, 0.1, "l1")
    with pytest.raises(ValueError, match="rho"):
        worst_case_sharpness(model, quad_loss, ONE, 0.0)
    with pytest.raises(ValueError, match="even"):
        average_case_sharpness(model, quad_loss, ONE, 0.1, n_samples=3)
