"""samcore.sharpness.smoothness_pl against closed forms on a quadratic (issue 22, Fig. 21)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from samcore.sharpness import smoothness_pl


def _quadratic(seed: int = 0, d: int = 5, n: int = 12):
    """L(w) = 1/2 mean_i (x_i . w)^2 = 1/2 w^T A w with A = X^T X / n, a linear model."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    model = nn.Linear(d, 1, bias=False).double()

    def loss_fn(m, batch):
        return 0.5 * (m(batch[0]) ** 2).mean(), {}

    batches = [(x[:5],), (x[5:],)]  # unequal batches: the example-mean weights matter
    return model, loss_fn, batches, x.numpy()


def test_quadratic_matches_closed_forms():
    model, loss_fn, batches, x = _quadratic()
    w = model.weight.detach().numpy().ravel().copy()
    a = x.T @ x / len(x)  # the exact Hessian, from numpy
    aw = a @ w
    expected_smooth = np.linalg.norm(a @ aw) / np.linalg.norm(aw)  # ||A^2 w|| / ||A w||
    expected_pl = aw @ aw / (w @ a @ w)  # ||A w||^2 / (2 * 1/2 w^T A w)
    out = smoothness_pl(model, loss_fn, batches, radius=0.1)
    assert out["loss"] == pytest.approx(0.5 * w @ a @ w, rel=1e-12)
    assert out["grad_norm"] == pytest.approx(np.linalg.norm(aw), rel=1e-12)
    assert out["smoothness"] == pytest.approx(expected_smooth, rel=1e-9)
    assert out["pl_ratio"] == pytest.approx(expected_pl, rel=1e-9)
    # the weights are restored exactly
    assert np.array_equal(model.weight.detach().numpy().ravel(), w)


def test_on_an_eigenvector_both_constants_are_its_eigenvalue():
    model, loss_fn, batches, x = _quadratic(seed=3)
    a = x.T @ x / len(x)
    lam, vecs = np.linalg.eigh(a)
    with torch.no_grad():
        model.weight.copy_(torch.from_numpy(2.0 * vecs[:, -1]).view(1, -1))
    out = smoothness_pl(model, loss_fn, batches, radius=0.1)
    assert out["smoothness"] == pytest.approx(lam[-1], rel=1e-9)
    assert out["pl_ratio"] == pytest.approx(lam[-1], rel=1e-9)


def test_floor_and_undefined_cases():
    model, loss_fn, batches, x = _quadratic()
    base = smoothness_pl(model, loss_fn, batches)
    half = base["loss"] / 2
    floored = smoothness_pl(model, loss_fn, batches, loss_floor=half)
    assert floored["pl_ratio"] == pytest.approx(2 * base["pl_ratio"], rel=1e-9)
    assert math.isnan(smoothness_pl(model, loss_fn, batches, loss_floor=1e9)["pl_ratio"])
    with torch.no_grad():
        model.weight.zero_()  # the minimum: zero gradient, smoothness undefined
    out = smoothness_pl(model, loss_fn, batches)
    assert out["grad_norm"] == 0 and math.isnan(out["smoothness"])
    with pytest.raises(ValueError):
        smoothness_pl(model, loss_fn, batches, radius=0.0)


def test_nonquadratic_against_a_hand_finite_difference():
    """A cubic term makes the gradient difference depend on the radius: checked against the
    gradient computed by hand at w and at w + delta."""
    torch.manual_seed(0)
    model = nn.Linear(3, 1, bias=False).double()
    x = torch.randn(8, 3, dtype=torch.float64)

    def loss_fn(m, batch):
        z = m(batch[0])
        return (z**2 / 2 + z**4 / 12).mean(), {}

    w = model.weight.detach().clone().view(-1)

    def grad(v):  # d/dw mean(z^2/2 + z^4/12) = mean((z + z^3/3) x)
        z = x @ v
        return ((z + z**3 / 3)[:, None] * x).mean(0)

    g = grad(w)
    delta = 0.1 * g / g.norm()
    expected = float((grad(w + delta) - g).norm() / 0.1)
    out = smoothness_pl(model, loss_fn, [(x,)], radius=0.1)
    assert out["smoothness"] == pytest.approx(expected, rel=1e-9)
