"""SAM against hand-derived steps (float64 numpy, independent of the implementation)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from samcore import SAM, LRSchedule, build_scheduler

A = np.diag([1.0, 4.0, 9.0])  # L(w) = 1/2 w^T A w, grad = A w


def _quadratic(w: torch.Tensor) -> torch.Tensor:
    return 0.5 * (w * (torch.tensor(np.diag(A), dtype=w.dtype) * w)).sum()


def _closure(opt, w):
    def closure():
        opt.zero_grad()
        loss = _quadratic(w)
        loss.backward()
        return loss

    return closure


def test_sgd_step_matches_hand_derivation():
    w0 = np.array([1.0, -2.0, 0.5])
    rho, lr = 0.3, 0.05
    w = nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    opt = SAM([w], torch.optim.SGD, rho=rho, lr=lr)
    loss = opt.two_pass_step(_closure(opt, w))
    g = A @ w0
    e = rho * g / np.linalg.norm(g)
    expected = w0 - lr * (A @ (w0 + e))
    np.testing.assert_allclose(w.detach().numpy(), expected, rtol=1e-12)
    assert loss.item() == pytest.approx(0.5 * w0 @ A @ w0)  # the loss at w, not at w + e


def test_sgd_momentum_weight_decay_act_at_w_not_w_plus_e():
    w0 = np.array([1.0, -2.0, 0.5])
    rho, lr, wd, mom = 0.2, 0.1, 0.01, 0.9
    w = nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    opt = SAM([w], torch.optim.SGD, rho=rho, lr=lr, momentum=mom, weight_decay=wd)
    wn, buf = w0.copy(), None
    for _ in range(3):
        opt.two_pass_step(_closure(opt, w))
        g = A @ wn
        e = rho * g / np.linalg.norm(g)
        d = A @ (wn + e) + wd * wn  # decay of w itself, by the base optimizer
        buf = d if buf is None else mom * buf + d
        wn = wn - lr * buf
    np.testing.assert_allclose(w.detach().numpy(), wn, rtol=1e-12)


def test_adam_base_step_matches_hand_derivation():
    w0 = np.array([1.0, -2.0, 0.5])
    rho, lr, b1, b2, eps = 0.1, 0.01, 0.9, 0.999, 1e-8
    w = nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    opt = SAM([w], torch.optim.Adam, rho=rho, lr=lr, betas=(b1, b2), eps=eps)
    m = v = np.zeros(3)
    wn = w0.copy()
    for t in range(1, 4):
        opt.two_pass_step(_closure(opt, w))
        g = A @ wn
        g2 = A @ (wn + rho * g / np.linalg.norm(g))
        m = b1 * m + (1 - b1) * g2
        v = b2 * v + (1 - b2) * g2**2
        wn = wn - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    np.testing.assert_allclose(w.detach().numpy(), wn, rtol=1e-10)


def test_adaptive_perturbation_formula():
    w0 = np.array([1.0, -2.0, 0.5])
    rho = 0.5
    w = nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    opt = SAM([w], torch.optim.SGD, rho=rho, adaptive=True, lr=0.1)
    _quadratic(w).backward()
    opt.first_step()
    g = A @ w0
    e = rho * w0**2 * g / np.linalg.norm(np.abs(w0) * g)
    np.testing.assert_allclose(w.detach().numpy(), w0 + e, rtol=1e-12)


def test_norm_is_global_over_groups_with_per_group_rho():
    a0, b0 = np.array([3.0, 0.0]), np.array([0.0, 4.0])
    a = nn.Parameter(torch.tensor(a0, dtype=torch.float64))
    b = nn.Parameter(torch.tensor(b0, dtype=torch.float64))
    opt = SAM([{"params": [a]}, {"params": [b], "rho": 1.0}], torch.optim.SGD, rho=0.5, lr=0.1)
    (0.5 * (a**2).sum() + 0.5 * (b**2).sum()).backward()  # grads = a, b; global norm 5
    opt.first_step()
    np.testing.assert_allclose(a.detach().numpy(), a0 + 0.5 * a0 / 5.0, rtol=1e-12)
    np.testing.assert_allclose(b.detach().numpy(), b0 + 1.0 * b0 / 5.0, rtol=1e-12)


def _mlp():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3))


def _batch():
    g = torch.Generator().manual_seed(2)
    return torch.randn(32, 5, generator=g), torch.randint(0, 3, (32,), generator=g)


def test_rho_zero_reproduces_base_step_exactly():
    x, y = _batch()
    m1, m2 = _mlp(), _mlp()
    sam = SAM(m1.parameters(), torch.optim.SGD, rho=0.0, lr=0.1, momentum=0.9, weight_decay=1e-3)
    sgd = torch.optim.SGD(m2.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    for _ in range(3):
        sam.two_pass_step(lambda: _ce_closure(sam, m1, x, y))
        _ce_closure(sgd, m2, x, y)
        sgd.step()
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(p1, p2)


def _ce_closure(opt, model, x, y):
    opt.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    return loss


@pytest.mark.parametrize("adaptive", [False, True])
def test_first_step_moves_rho_and_unperturb_restores_bitwise(adaptive):
    x, y = _batch()
    model = _mlp()
    before = [p.detach().clone() for p in model.parameters()]
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.07, adaptive=adaptive, lr=0.1)
    _ce_closure(opt, model, x, y)
    grads = [p.grad.clone() for p in model.parameters()]
    opt.first_step()
    diff = torch.cat([(p - b).flatten() for p, b in zip(model.parameters(), before)])
    if adaptive:
        # ||e|| = rho * ||w^2 g|| / ||w g||
        num = torch.cat([(b**2 * g).flatten() for b, g in zip(before, grads)]).norm()
        den = torch.cat([(b * g).flatten() for b, g in zip(before, grads)]).norm()
        assert diff.norm().item() == pytest.approx(0.07 * (num / den).item(), rel=1e-4)
    else:
        assert diff.norm().item() == pytest.approx(0.07, rel=1e-4)
    assert opt.perturbation_norm().item() == pytest.approx(diff.norm().item(), rel=1e-4)
    opt.unperturb()
    for p, b in zip(model.parameters(), before):
        assert torch.equal(p, b)


def test_closure_step_equals_two_step_api():
    x, y = _batch()
    m1, m2 = _mlp(), _mlp()
    o1 = SAM(m1.parameters(), torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)
    o2 = SAM(m2.parameters(), torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)
    for _ in range(3):
        o1.two_pass_step(lambda: _ce_closure(o1, m1, x, y))
        _ce_closure(o2, m2, x, y)
        o2.first_step(zero_grad=True)
        _ce_closure(o2, m2, x, y)
        o2.second_step(zero_grad=True)
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(p1, p2)


def test_step_order_errors():
    model = _mlp()
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.1)
    with pytest.raises(RuntimeError):
        opt.second_step()
    with pytest.raises(ValueError):
        opt.step()


@pytest.mark.parametrize("rho", [-0.1, float("nan"), float("inf")])
def test_bad_rho_rejected(rho):
    with pytest.raises(ValueError, match="rho"):
        SAM(_mlp().parameters(), torch.optim.SGD, rho=rho, lr=0.1)


def test_base_optimizer_must_be_a_class():
    with pytest.raises(TypeError):
        SAM(_mlp().parameters(), torch.optim.SGD(_mlp().parameters(), lr=0.1), lr=0.1)


def test_scheduler_drives_the_base_optimizer_lr():
    w0 = np.array([1.0, -2.0, 0.5])
    w = nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    opt = SAM([w], torch.optim.SGD, rho=0.1, lr=1.0)
    sched = build_scheduler(opt, LRSchedule("step", total_steps=4, milestones=(0.5,), gamma=0.1))
    wn = w0.copy()
    with _no_warnings():
        for t in range(4):
            _quadratic(w).backward()
            opt.first_step(zero_grad=True)
            _quadratic(w).backward()
            opt.second_step(zero_grad=True)
            lr = 1.0 if t < 2 else 0.1
            g = A @ wn
            wn = wn - lr * (A @ (wn + 0.1 * g / np.linalg.norm(g)))
            sched.step()
    np.testing.assert_allclose(w.detach().numpy(), wn, rtol=1e-12)
    assert opt.base_optimizer.param_groups[0]["lr"] == pytest.approx(0.1)


class _no_warnings:
    """Fail on warnings (e.g. torch's 'lr_scheduler.step() before optimizer.step()')."""

    def __enter__(self):
        import warnings

        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("error")

    def __exit__(self, *exc):
        self._cm.__exit__(*exc)


@pytest.mark.parametrize("base", [torch.optim.SGD, torch.optim.Adam])
def test_state_dict_round_trip_resumes_identically(base):
    x, y = _batch()
    kwargs = {"lr": 0.05, "momentum": 0.9} if base is torch.optim.SGD else {"lr": 0.01}
    model = _mlp()
    opt = SAM(model.parameters(), base, rho=0.05, **kwargs)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    for _ in range(3):
        opt.two_pass_step(lambda: _ce_closure(opt, model, x, y))
        sched.step()
    saved_model = copy.deepcopy(model.state_dict())
    saved_opt = copy.deepcopy(opt.state_dict())
    saved_sched = copy.deepcopy(sched.state_dict())
    for _ in range(3):
        opt.two_pass_step(lambda: _ce_closure(opt, model, x, y))
        sched.step()

    model2 = _mlp()
    model2.load_state_dict(saved_model)
    opt2 = SAM(model2.parameters(), base, rho=0.3, **kwargs)  # rho restored from the state
    sched2 = torch.optim.lr_scheduler.StepLR(opt2, step_size=2, gamma=0.5)
    opt2.load_state_dict(saved_opt)
    sched2.load_state_dict(saved_sched)
    assert opt2.param_groups is opt2.base_optimizer.param_groups
    assert opt2.param_groups[0]["rho"] == 0.05
    for _ in range(3):
        opt2.two_pass_step(lambda: _ce_closure(opt2, model2, x, y))
        sched2.step()
    for p1, p2 in zip(model.parameters(), model2.parameters()):
        assert torch.equal(p1, p2)


def test_sam_minimises_a_rosenbrock_function():
    xy = nn.Parameter(torch.tensor([-1.5, 2.0], dtype=torch.float64))
    opt = SAM([xy], torch.optim.Adam, rho=0.01, lr=0.02)

    def f():
        return (1 - xy[0]) ** 2 + 100 * (xy[1] - xy[0] ** 2) ** 2

    start = f().item()
    for _ in range(2000):

        def closure():
            opt.zero_grad()
            loss = f()
            loss.backward()
            return loss

        opt.two_pass_step(closure)
    assert f().item() < 1e-2 * start
    assert math.dist(xy.tolist(), [1.0, 1.0]) < 0.2
