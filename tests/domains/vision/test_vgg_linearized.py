"""cifar10-vgg11-linearized (issue 22, App. E): the centred model is exactly 0 at init, the
alpha scaling of outputs, loss and gradients against closed forms, the VGG-11 hand count."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

from domains import ConfigError, create_workload
from samcore import count_params

pytestmark = pytest.mark.vision


def _model(alpha: float, seed: int = 0):
    torch.manual_seed(seed)
    w = create_workload("cifar10-vgg11-linearized", "tiny", alpha=alpha)
    return w, w.build_model(0.25)


def test_vgg11_hand_count_and_frozen_copy_not_counted():
    # conv 3x3 with bias: 9 c_in c_out + c_out; channels 64-128-256-256-512-512-512-512; fc 512->10
    convs = [
        (3, 64),
        (64, 128),
        (128, 256),
        (256, 256),
        (256, 512),
        (512, 512),
        (512, 512),
        (512, 512),
    ]
    hand = sum(9 * a * b + b for a, b in convs) + 512 * 10 + 10
    assert hand == 9_225_610  # VGG-11 for CIFAR-10 (no batch norm)
    w = create_workload("cifar10-vgg11-linearized", "paper")
    assert count_params(w.build_model(1.0)) == hand


@pytest.mark.parametrize("alpha", [1.0, 10.0, 1000.0])
def test_output_at_init_is_exactly_zero(alpha):
    _, model = _model(alpha)
    x = torch.randn(4, 3, 32, 32)
    assert torch.equal(model(x), torch.zeros(4, 10))


def test_output_is_alpha_times_the_change_of_the_network():
    alpha = 37.0
    _, model = _model(alpha)
    init = {k: v.clone() for k, v in model.net.state_dict().items()}
    with torch.no_grad():
        for p in model.net.parameters():
            p.add_(0.01 * torch.randn_like(p))
    x = torch.randn(3, 3, 32, 32)
    moved = functional_call(model.net, dict(model.net.named_parameters()), (x,))
    at_init = functional_call(model.net, init, (x,))
    torch.testing.assert_close(model(x), alpha * (moved - at_init), rtol=1e-5, atol=1e-6)
    # the frozen copy never moves and never gets a gradient
    model(x).sum().backward()
    assert all(p.grad is None and not p.requires_grad for p in model.net0.parameters())


@pytest.mark.parametrize("alpha", [1.0, 10.0, 100.0])
def test_loss_is_mse_over_alpha_squared(alpha):
    w, model = _model(alpha)
    out = torch.randn(6, 10)
    y = torch.tensor([0, 3, 9, 2, 2, 7])
    onehot = nn.functional.one_hot(y, 10).float()
    expected = nn.MSELoss()(out, onehot) / alpha**2
    torch.testing.assert_close(w.criterion(out, y), expected)
    torch.testing.assert_close(w.criterion(out, y, reduction="sum"), 6 * expected)
    # at init f_alpha = 0: loss = mean_k onehot_k^2 / alpha^2 = (1/10) / alpha^2
    x = torch.randn(6, 3, 32, 32)
    loss, _ = w.loss(model, (x, y))
    assert loss.item() == pytest.approx(0.1 / alpha**2, rel=1e-6)


def test_gradient_at_init_scales_as_one_over_alpha():
    """d/dw (1/a^2) mean (a (f - f0) - y)^2 = (2/a) mean (a (f - f0) - y) df/dw, which at w0
    (f = f0) is -(2/a) mean y df/dw: the alpha = 10 gradient is the alpha = 1 gradient / 10."""
    x, y = torch.randn(5, 3, 32, 32), torch.tensor([1, 4, 4, 0, 8])
    grads = {}
    for alpha in (1.0, 10.0):
        w, model = _model(alpha, seed=1)  # same seed: same w0
        loss, _ = w.loss(model, (x, y))
        grads[alpha] = torch.autograd.grad(loss, list(model.net.parameters()))
    for g1, g10 in zip(grads[1.0], grads[10.0]):
        torch.testing.assert_close(g10, g1 / 10, rtol=1e-4, atol=1e-9)


def test_bad_alpha_and_sparsity_refused():
    with pytest.raises(ConfigError, match="alpha"):
        create_workload("cifar10-vgg11-linearized", "tiny", alpha=0.0)
    with pytest.raises(ConfigError, match="sparsity"):
        create_workload("cifar10-vgg11-linearized", "tiny", sparsity=0.5)
