"""SAM's two passes see the same dropout masks by default (issue 17).

The expected steps are computed with explicit masks: a mask is what ``F.dropout`` draws on a
tensor of ones of the activation's shape from the same seeded generator (one ``bernoulli_``
each, as ``nn.Dropout`` draws), and the loss is then a plain function of (w, mask). No
random-state replay is involved in the oracle.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from samcore import SAM, train_step

P_DROP = 0.5
RHO = 0.3
SEED = 11


def _data(n=16):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 5, generator=g, dtype=torch.float64)
    return x, torch.randn(n, 1, generator=g, dtype=torch.float64)


def _model() -> nn.Sequential:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Dropout(P_DROP), nn.Linear(16, 1)).double()


def _mse(model, batch):
    x, y = batch
    return F.mse_loss(model(x), y), {}


def _draw_masks(shapes: list[tuple[int, int]]) -> list[torch.Tensor]:
    """Masks (scaled by 1/(1-p)) in the order the passes draw them, from SEED."""
    torch.manual_seed(SEED)
    return [F.dropout(torch.ones(s, dtype=torch.float64), P_DROP) for s in shapes]


def _loss_with_mask(params: list[torch.Tensor], x, y, mask) -> torch.Tensor:
    w1, b1, w2, b2 = params
    return F.mse_loss(F.linear(mask * torch.tanh(F.linear(x, w1, b1)), w2, b2), y)


def _grad(params, x, y, mask) -> list[torch.Tensor]:
    leaves = [p.detach().clone().requires_grad_() for p in params]
    return list(torch.autograd.grad(_loss_with_mask(leaves, x, y, mask), leaves))


def _sam_update(params, x, y, mask_w, mask_we) -> list[torch.Tensor]:
    """SGD(lr=1) SAM: w - grad L_{mask_we}(w + rho g / ||g||), g = grad L_{mask_w}(w)."""
    g = _grad(params, x, y, mask_w)
    norm = torch.cat([t.flatten() for t in g]).norm()
    climbed = [p + RHO * t / (norm + 1e-12) for p, t in zip(params, g)]
    g_sam = _grad(climbed, x, y, mask_we)
    return [p - t for p, t in zip(params, g_sam)]


def _run_train_step(**kw):
    model = _model()
    w0 = [p.detach().clone() for p in model.parameters()]
    opt = SAM(model.parameters(), torch.optim.SGD, rho=RHO, lr=1.0)
    torch.manual_seed(SEED)
    train_step(model, opt, _mse, _data(), **kw)
    after = torch.rand(3)  # where the global stream continues after the step
    return w0, [p.detach() for p in model.parameters()], after


def _assert_params(actual, expected):
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)


def test_second_pass_replays_the_first_pass_mask():
    w0, w1, after = _run_train_step()
    (mask,) = _draw_masks([(16, 16)])
    _assert_params(w1, _sam_update(w0, *_data(), mask, mask))
    # The stream continues from where the first pass left it: one mask drawn, not two.
    _draw_masks([(16, 16)])
    assert torch.equal(after, torch.rand(3))


def test_same_dropout_masks_false_draws_a_fresh_mask():
    w0, w1, after = _run_train_step(same_dropout_masks=False)
    mask_w, mask_we = _draw_masks([(16, 16), (16, 16)])
    assert not torch.equal(mask_w, mask_we)
    _assert_params(w1, _sam_update(w0, *_data(), mask_w, mask_we))
    _draw_masks([(16, 16), (16, 16)])
    assert torch.equal(after, torch.rand(3))


def test_the_masks_matter_here():
    """The two modes give different steps on this model (else the tests above prove little)."""
    _, same, _ = _run_train_step()
    _, fresh, _ = _run_train_step(same_dropout_masks=False)
    assert max((a - b).abs().max().item() for a, b in zip(same, fresh)) > 1e-3


def test_micro_batches_each_replay_their_own_mask():
    w0, w1, _ = _run_train_step(micro_batch_size=8)
    x, y = _data()
    m1, m2 = _draw_masks([(8, 16), (8, 16)])
    # Both passes accumulate 0.5 * (chunk loss); the chunk's mask is the same in both passes.
    g = [0.5 * (a + b) for a, b in zip(_grad(w0, x[:8], y[:8], m1), _grad(w0, x[8:], y[8:], m2))]
    norm = torch.cat([t.flatten() for t in g]).norm()
    climbed = [p + RHO * t / (norm + 1e-12) for p, t in zip(w0, g)]
    g1, g2 = _grad(climbed, x[:8], y[:8], m1), _grad(climbed, x[8:], y[8:], m2)
    _assert_params(w1, [p - 0.5 * (a + b) for p, a, b in zip(w0, g1, g2)])


def test_m_sharpness_chunks_replay_their_own_mask():
    w0, w1, _ = _run_train_step(m_sharpness=8)
    x, y = _data()
    m1, m2 = _draw_masks([(8, 16), (8, 16)])
    # Each chunk climbs from its own gradient; the update averages the chunks' (weight 1/2).
    u1 = _sam_update(w0, x[:8], y[:8], m1, m1)
    u2 = _sam_update(w0, x[8:], y[8:], m2, m2)
    _assert_params(w1, [p - 0.5 * ((p - a) + (p - b)) for p, a, b in zip(w0, u1, u2)])


@pytest.mark.parametrize("same", [True, False])
def test_two_pass_step_replays_like_train_step(same):
    model = _model()
    reference = copy.deepcopy(model)
    x, y = _data()
    opt = SAM(model.parameters(), torch.optim.SGD, rho=RHO, lr=1.0)

    def closure():
        loss = F.mse_loss(model(x), y)
        loss.backward()
        return loss

    torch.manual_seed(SEED)
    opt.two_pass_step(closure, same_dropout_masks=same)
    after = torch.rand(3)
    masks = _draw_masks([(16, 16)] * (1 if same else 2))
    w0 = [p.detach() for p in reference.parameters()]
    _assert_params(list(model.parameters()), _sam_update(w0, x, y, masks[0], masks[-1]))
    assert torch.equal(after, torch.rand(3))
