"""samcore.SAM as a drop-in for davda54/sam in other people's loops (issue 18, findings 1-4).

``DavdaSAM`` below is davda54/sam's ``sam.py`` (commit 87a9604), written out because it is
not installable; the loops are the ones its README gives.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from samcore import SAM


class DavdaSAM(torch.optim.Optimizer):
    """davda54/sam ``sam.py`` (reference; formatting aside, as published)."""

    def __init__(self, params, base_optimizer, rho=0.05, adaptive=False, **kwargs):
        defaults = dict(rho=rho, adaptive=adaptive, **kwargs)
        super().__init__(params, defaults)
        self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)

    @torch.no_grad()
    def first_step(self, zero_grad=False):
        grad_norm = self._grad_norm()
        for group in self.param_groups:
            scale = group["rho"] / (grad_norm + 1e-12)
            for p in group["params"]:
                if p.grad is None:
                    continue
                self.state[p]["old_p"] = p.data.clone()
                e_w = (torch.pow(p, 2) if group["adaptive"] else 1.0) * p.grad * scale.to(p)
                p.add_(e_w)
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def second_step(self, zero_grad=False):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                p.data = self.state[p]["old_p"]
        self.base_optimizer.step()
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def step(self, closure=None):
        closure = torch.enable_grad()(closure)
        self.first_step(zero_grad=True)
        closure()
        self.second_step()

    def _grad_norm(self):
        shared_device = self.param_groups[0]["params"][0].device
        return torch.norm(
            torch.stack(
                [
                    ((torch.abs(p) if group["adaptive"] else 1.0) * p.grad)
                    .norm(p=2)
                    .to(shared_device)
                    for group in self.param_groups
                    for p in group["params"]
                    if p.grad is not None
                ]
            ),
            p=2,
        )

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        self.base_optimizer.param_groups = self.param_groups


def _data(n=16):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 5, generator=g, dtype=torch.float64), torch.randint(
        0, 3, (n,), generator=g
    )


def _bn_dropout_net() -> nn.Sequential:
    torch.manual_seed(2)
    return nn.Sequential(
        nn.Linear(5, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Dropout(0.3), nn.Linear(12, 3)
    ).double()


def _max_diff(m1: nn.Module, m2: nn.Module) -> float:
    return max((a - b).abs().max().item() for a, b in zip(m1.parameters(), m2.parameters()))


# ---------------------------------------------------------------- 1. step(closure)
def _readme_closure_loop(opt_cls, steps=3, **kw):
    """davda54's README "single closure-based step" loop, counting forward passes."""
    model = _bn_dropout_net()
    forwards = []
    model.register_forward_hook(lambda *_: forwards.append(1))
    opt = opt_cls(model.parameters(), torch.optim.SGD, rho=0.1, lr=0.1, momentum=0.9, **kw)
    x, y = _data()
    torch.manual_seed(5)  # dropout masks: the same stream for both implementations
    for _ in range(steps):

        def closure():
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            return loss

        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step(closure)
        opt.zero_grad()
    return model, len(forwards)


@pytest.mark.parametrize("adaptive", [False, True])
def test_step_closure_follows_davda54s_readme_loop(adaptive):
    ours, n_ours = _readme_closure_loop(SAM, adaptive=adaptive)
    ref, n_ref = _readme_closure_loop(DavdaSAM, adaptive=adaptive)
    assert n_ours == n_ref == 2 * 3  # two passes per step: at w (caller) and w + e (closure)
    # One running-statistics update per pass, as davda54 (the old step updated twice at w).
    assert ours[1].num_batches_tracked.item() == ref[1].num_batches_tracked.item() == 2 * 3
    torch.testing.assert_close(ours[1].running_mean, ref[1].running_mean, rtol=0, atol=1e-12)
    assert _max_diff(ours, ref) < 1e-12


def test_step_closure_without_the_first_backward_is_a_loud_error():
    model = _bn_dropout_net()
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.1, lr=0.1)
    with pytest.raises(RuntimeError, match="two_pass_step"):
        opt.step(lambda: F.cross_entropy(model(_data()[0]), _data()[1]).backward())


def test_two_step_api_matches_davda54_with_adam_asam():
    """The README's first_step/second_step loop, ASAM on Adam (other state than SGD's)."""
    models, x, y = [_bn_dropout_net() for _ in range(2)], *_data()
    opts = [
        cls(m.parameters(), torch.optim.Adam, rho=0.5, adaptive=True, lr=1e-2)
        for cls, m in zip((SAM, DavdaSAM), models)
    ]
    for model, opt in zip(models, opts):
        torch.manual_seed(5)
        for _ in range(3):
            F.cross_entropy(model(x), y).backward()
            opt.first_step(zero_grad=True)
            F.cross_entropy(model(x), y).backward()
            opt.second_step(zero_grad=True)
    # Rounding only (w (w g) vs w^2 g), which Adam's 1/sqrt(v) amplifies at the first steps.
    assert _max_diff(*models) < 1e-9


def test_eps_keyword_reaches_the_base_optimizer():
    """davda54 forwards every keyword but rho/adaptive to the base: Adam's eps is Adam's."""
    opt = SAM(_bn_dropout_net().parameters(), torch.optim.Adam, rho=0.1, lr=1e-3, eps=1e-3)
    assert opt.base_optimizer.param_groups[0]["eps"] == 1e-3
    assert opt.norm_eps == 1e-12


# ---------------------------------------------------------------- 3. ASAM leaves p.grad
@pytest.mark.parametrize("swap", [True, False], ids=["cpu-swap", "in-place-path"])
@pytest.mark.parametrize("adaptive", [False, True])
def test_first_step_leaves_the_gradient_untouched(adaptive, swap):
    model = _bn_dropout_net().eval()
    x, y = _data()
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.5, adaptive=adaptive, lr=0.1)
    opt._swap_on_cpu = swap  # False: the accelerators' in-place climb, run on the CPU
    w = [p.detach().clone() for p in model.parameters()]
    F.cross_entropy(model(x), y).backward()
    g = [p.grad.clone() for p in model.parameters()]
    opt.first_step(zero_grad=False)
    for p, g0 in zip(model.parameters(), g):
        assert torch.equal(p.grad, g0)
    # ... and w + e is still SAM's (ASAM: e = rho w^2 g / ||w g||), checked by hand.
    d = [t * t * t_g if adaptive else t_g for t, t_g in zip(w, g)]
    n = torch.cat([(t * t_g if adaptive else t_g).flatten() for t, t_g in zip(w, g)]).norm()
    for p, w0, d0 in zip(model.parameters(), w, d):
        torch.testing.assert_close(p.detach(), w0 + 0.5 * d0 / n, rtol=1e-12, atol=1e-12)
    opt.second_step()
    # The base step used the gradient that was there (here g at w: no second pass was run).
    for p, w0, g0 in zip(model.parameters(), w, g):
        torch.testing.assert_close(p.detach(), w0 - 0.1 * g0, rtol=1e-12, atol=1e-12)


def test_adaptive_first_step_allocates_no_parameter_sized_memory():
    """After the first step the spare buffers exist; later climbs allocate only norms."""
    model = nn.Linear(256, 256).double()
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.5, adaptive=True, lr=0.1)
    x = torch.randn(8, 256, dtype=torch.float64)
    model(x).square().mean().backward()
    opt.first_step()
    opt.unperturb()
    with torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True
    ) as prof:
        opt.first_step()
    allocated = sum(max(e.cpu_memory_usage, 0) for e in prof.events())
    assert allocated < 256 * 8  # far below one 256 x 256 float64 tensor (512 KiB)
    opt.unperturb()


# ---------------------------------------------------------------- 4. davda54 state_dict
def test_davda54_state_dict_converts_with_a_warning():
    x, y = _data()
    ref_model = _bn_dropout_net()
    ref = DavdaSAM(ref_model.parameters(), torch.optim.Adam, rho=0.1, lr=1e-2)
    F.cross_entropy(ref_model(x), y).backward()
    ref.first_step(zero_grad=True)
    F.cross_entropy(ref_model(x), y).backward()
    ref.second_step(zero_grad=True)
    saved = ref.state_dict()
    assert all(set(s) == {"old_p"} for s in saved["state"].values())  # davda54's format

    model, fresh_model = copy.deepcopy(ref_model), copy.deepcopy(ref_model)
    opt = SAM(model.parameters(), torch.optim.Adam, rho=0.9, lr=1.0)
    with pytest.warns(UserWarning, match="davda54/sam"):
        opt.load_state_dict(saved)
    assert opt.param_groups[0]["lr"] == 1e-2 and opt.param_groups[0]["rho"] == 0.1
    # The next step runs (it raised KeyError: 'step') and is a fresh Adam-based SAM step.
    fresh = SAM(fresh_model.parameters(), torch.optim.Adam, rho=0.1, lr=1e-2)
    for m, o in ((model, opt), (fresh_model, fresh)):
        torch.manual_seed(7)
        F.cross_entropy(m(x), y).backward()
        o.first_step(zero_grad=True)
        F.cross_entropy(m(x), y).backward()
        o.second_step(zero_grad=True)
    assert _max_diff(model, fresh_model) == 0.0


def test_own_state_dict_loads_without_a_warning():
    model = _bn_dropout_net()
    opt = SAM(model.parameters(), torch.optim.Adam, rho=0.1, lr=1e-2)
    F.cross_entropy(model(_data()[0]), _data()[1]).backward()
    opt.first_step(zero_grad=True)
    F.cross_entropy(model(_data()[0]), _data()[1]).backward()
    opt.second_step(zero_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.load_state_dict(opt.state_dict())
