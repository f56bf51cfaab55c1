"""train_step: batch-norm statistics, accumulation, m-sharpness, GradScaler."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from samcore import SAM, frozen_bn_stats, train_step


def _data(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g), torch.randint(0, 4, (n,), generator=g)


def _ce(model, batch):
    x, y = batch
    logits = model(x)
    return nn.functional.cross_entropy(logits, y), {"acc": (logits.argmax(1) == y).float().mean()}


def _mlp(bn=False):
    torch.manual_seed(3)
    layers = (
        [nn.Linear(6, 12)] + ([nn.BatchNorm1d(12)] if bn else []) + [nn.ReLU(), nn.Linear(12, 4)]
    )
    return nn.Sequential(*layers)


def test_bn_running_stats_come_from_the_clean_pass_only():
    batch = _data()
    model = _mlp(bn=True)
    reference = copy.deepcopy(model)
    reference.train()
    with torch.no_grad():
        reference(batch[0])  # one clean forward: what the running stats must become
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.5, lr=0.1)
    train_step(model, opt, _ce, batch)
    bn, ref = model[1], reference[1]
    assert torch.equal(bn.running_mean, ref.running_mean)
    assert torch.equal(bn.running_var, ref.running_var)
    assert bn.num_batches_tracked.item() == 1
    assert bn.track_running_stats  # restored after the step


def test_frozen_bn_still_normalises_by_batch_statistics():
    model = _mlp(bn=True).train()
    x = _data()[0] * 5 + 3
    out_train = model(x)
    with frozen_bn_stats(model):
        out_frozen = model(x)
    torch.testing.assert_close(out_frozen, out_train)  # batch stats, not the running ones
    model.eval()
    assert not torch.allclose(model(x), out_train)


@pytest.mark.parametrize("sam", [False, True])
def test_accumulation_equals_the_big_batch(sam):
    batch = _data(30)
    m1, m2 = _mlp(), _mlp()
    make = (
        (lambda m: SAM(m.parameters(), torch.optim.SGD, rho=0.1, lr=0.1, momentum=0.9))
        if sam
        else (lambda m: torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9))
    )
    o1, o2 = make(m1), make(m2)
    for _ in range(3):
        r1 = train_step(m1, o1, _ce, batch)
        r2 = train_step(m2, o2, _ce, batch, micro_batch_size=8)  # 8+8+8+6: uneven chunks
    torch.testing.assert_close(r1.loss, r2.loss)
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(p1, p2, rtol=1e-5, atol=1e-6)


def test_m_sharpness_matches_per_chunk_ascent_by_hand():
    x, y = _data(16)
    rho, lr, m = 0.2, 0.1, 8
    model = _mlp()
    by_hand = copy.deepcopy(model)
    opt = SAM(model.parameters(), torch.optim.SGD, rho=rho, lr=lr)
    train_step(model, opt, _ce, (x, y), m_sharpness=m)

    params = list(by_hand.parameters())
    total = [torch.zeros_like(p) for p in params]
    for s in (0, 8):
        xs, ys = x[s : s + m], y[s : s + m]
        g = torch.autograd.grad(nn.functional.cross_entropy(by_hand(xs), ys), params)
        norm = torch.sqrt(sum((gi**2).sum() for gi in g))
        with torch.no_grad():
            for p, gi in zip(params, g):
                p.add_(rho * gi / norm)
        g2 = torch.autograd.grad(nn.functional.cross_entropy(by_hand(xs), ys), params)
        with torch.no_grad():
            for p, gi in zip(params, g):
                p.sub_(rho * gi / norm)
        total = [t + gi / 2 for t, gi in zip(total, g2)]
    with torch.no_grad():
        for p, t in zip(params, total):
            p.sub_(lr * t)
    for p1, p2 in zip(model.parameters(), by_hand.parameters()):
        torch.testing.assert_close(p1, p2, rtol=1e-5, atol=1e-6)


def test_m_sharpness_of_the_whole_batch_is_plain_sam():
    batch = _data(16)
    m1, m2 = _mlp(), _mlp()
    o1 = SAM(m1.parameters(), torch.optim.SGD, rho=0.2, lr=0.1)
    o2 = SAM(m2.parameters(), torch.optim.SGD, rho=0.2, lr=0.1)
    train_step(m1, o1, _ce, batch)
    train_step(m2, o2, _ce, batch, m_sharpness=16)
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(p1, p2)


def _scaler():
    return torch.amp.GradScaler("cpu", init_scale=2.0**10)


def test_grad_scaler_path_equals_unscaled_sam():
    batch = _data()
    m1, m2 = _mlp(), _mlp()
    o1 = SAM(m1.parameters(), torch.optim.SGD, rho=0.1, lr=0.1)
    o2 = SAM(m2.parameters(), torch.optim.SGD, rho=0.1, lr=0.1)
    scaler = _scaler()
    for _ in range(2):
        train_step(m1, o1, _ce, batch)
        res = train_step(m2, o2, _ce, batch, scaler=scaler)
        assert not res.skipped
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(p1, p2, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("which_pass", [1, 2])
def test_grad_scaler_inf_skips_the_whole_step(which_pass):
    batch = _data()
    model = _mlp()
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.1, lr=0.1, momentum=0.9)
    scaler = _scaler()
    calls = {"n": 0}

    def loss_fn(m, b):
        calls["n"] += 1
        loss, extra = _ce(m, b)
        if calls["n"] == which_pass:
            loss = loss * float("inf")
        return loss, extra

    before = [p.detach().clone() for p in model.parameters()]
    res = train_step(model, opt, loss_fn, batch, scaler=scaler)
    assert bool(res.skipped)
    assert scaler.get_scale() < 2.0**10
    for p, b in zip(model.parameters(), before):
        assert torch.equal(p, b)  # not moved, and not left at w + e
    assert not opt.base_optimizer.state  # no momentum was accumulated from the bad step
    assert calls["n"] == which_pass if which_pass == 1 else calls["n"] == 2


def test_base_optimizer_step_through_train_step():
    batch = _data()
    m1, m2 = _mlp(), _mlp()
    o1 = torch.optim.SGD(m1.parameters(), lr=0.1)
    o2 = torch.optim.SGD(m2.parameters(), lr=0.1)
    res = train_step(m1, o1, _ce, batch)
    o2.zero_grad()
    _ce(m2, batch)[0].backward()
    o2.step()
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(p1, p2)
    assert res.grad_norm is None and set(res.metrics) == {"acc"}


def test_sam_base_step_counts_as_the_optimizers_step_for_lr_schedulers():
    """Late-phase SAM's plain steps go through SAM.base_step, which tells torch's schedulers a
    step happened (no 'scheduler.step() before optimizer.step()' warning) and equals the base
    optimizer's own step: w - lr * g with lr 0.1, g = 2 w for sum(w**2)."""
    import warnings

    from samcore import SAM

    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = SAM([w], torch.optim.SGD, rho=0.05, lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    (w**2).sum().backward()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.base_step()
        sched.step()
    torch.testing.assert_close(w.detach(), torch.tensor([0.8, -1.6]))
    assert opt.param_groups[0]["lr"] == 0.05
