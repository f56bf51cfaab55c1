"""Seed ensembles (samcore/ensemble.py) against S separately trained models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from samcore import build_optimizer, train_step
from samcore.ensemble import SeedEnsemble, build_ensemble_optimizer, stack_batches

S = 3


def _mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))


def _ce(model, batch):
    x, y = batch
    logits = model(x)
    return nn.functional.cross_entropy(logits, y), {"acc": (logits.argmax(1) == y).float().mean()}


def _batches(seed: int, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(100 + seed)  # every seed its own data order
    return [
        (torch.randn(8, 6, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(n)
    ]


OPTS = [
    ("sgd", dict(lr=0.1, momentum=0.9, weight_decay=1e-3), False),
    ("sgd", dict(lr=0.1, momentum=0.9, weight_decay=1e-3, decay_norm_and_bias=False), True),
    ("adam", dict(lr=1e-2, weight_decay=1e-3), False),
]


@pytest.mark.parametrize("name,kw,adaptive", OPTS)
@pytest.mark.parametrize("sam", [False, True])
def test_ensemble_equals_sequential_runs(name, kw, adaptive, sam):
    steps = 4
    seq_models = [_mlp(s) for s in range(S)]
    ens = SeedEnsemble([_mlp(s) for s in range(S)])
    rho = dict(sam=sam, rho=0.2, adaptive=adaptive and sam)
    seq_opts = [build_optimizer(m, name, **kw, **rho) for m in seq_models]
    ens_opt = build_ensemble_optimizer(ens, name, **kw, **rho)
    data = [_batches(s, steps) for s in range(S)]
    loss_fn = ens.loss_fn(_ce)
    for t in range(steps):
        seq = [
            train_step(m, o, _ce, data[s][t]) for s, (m, o) in enumerate(zip(seq_models, seq_opts))
        ]
        res = train_step(ens, ens_opt, loss_fn, stack_batches([data[s][t] for s in range(S)]))
        torch.testing.assert_close(res.metrics["seed/loss"], torch.stack([r.loss for r in seq]))
        if sam:
            torch.testing.assert_close(res.grad_norm, torch.stack([r.grad_norm for r in seq]))
    for s, model in enumerate(seq_models):
        for name_, p in model.named_parameters():
            torch.testing.assert_close(
                ens.params_dict()[name_][s], p.detach(), rtol=1e-5, atol=1e-6
            )


@pytest.mark.parametrize("adaptive", [False, True])
def test_per_seed_perturbation_and_grads_left_as_they_were(adaptive):
    """Each seed climbs along its own gradient (numpy: e_s = rho g_s/||g_s||, or ASAM's
    rho w_s^2 g_s/||w_s g_s||), and p.grad is still g afterwards, as SAM.first_step leaves it."""
    ens = SeedEnsemble([_mlp(s) for s in range(S)])
    opt = build_ensemble_optimizer(ens, "sgd", lr=0.1, sam=True, rho=0.3, adaptive=adaptive)
    batch = stack_batches([_batches(s, 1)[0] for s in range(S)])
    loss, _ = ens.loss_fn(_ce)(ens, batch)
    loss.backward()
    before = [p.detach().clone().numpy() for p in ens.stacked]
    grads = [p.grad.clone().numpy() for p in ens.stacked]
    opt.first_step()
    for p, g in zip(ens.stacked, grads):
        assert np.array_equal(p.grad.numpy(), g)
    for s in range(S):
        g = np.concatenate([gr[s].ravel() for gr in grads]).astype(np.float64)
        w = np.concatenate([b[s].ravel() for b in before]).astype(np.float64)
        e = np.concatenate(
            [(p.detach().numpy()[s] - b[s]).ravel() for p, b in zip(ens.stacked, before)]
        )
        expected = (
            0.3 * w**2 * g / np.linalg.norm(w * g) if adaptive else 0.3 * g / np.linalg.norm(g)
        )
        np.testing.assert_allclose(e, expected, rtol=1e-4, atol=1e-7)
    if not adaptive:
        np.testing.assert_allclose(opt.perturbation_norm().numpy(), [0.3] * S, rtol=1e-4)
    opt.unperturb()
    for p, b in zip(ens.stacked, before):
        assert np.array_equal(p.detach().numpy(), b)


def test_batch_norm_is_refused():
    with pytest.raises(ValueError, match="batch norm"):
        SeedEnsemble([nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)) for _ in range(2)])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_ensemble_on_cuda_equals_sequential_runs_on_cuda():
    """The CUDA path of EnsembleSAM (fused foreach kernels, no host sync)."""
    dev = torch.device("cuda")
    seq_models = [_mlp(s).to(dev) for s in range(S)]
    ens = SeedEnsemble([_mlp(s).to(dev) for s in range(S)])
    seq_opts = [
        build_optimizer(m, "sgd", lr=0.1, momentum=0.9, sam=True, rho=0.2) for m in seq_models
    ]
    ens_opt = build_ensemble_optimizer(ens, "sgd", lr=0.1, momentum=0.9, sam=True, rho=0.2)
    data = [[tuple(t.to(dev) for t in b) for b in _batches(s, 3)] for s in range(S)]
    for t in range(3):
        for s in range(S):
            train_step(seq_models[s], seq_opts[s], _ce, data[s][t])
        batch = stack_batches([data[s][t] for s in range(S)])
        train_step(ens, ens_opt, ens.loss_fn(_ce), batch)
    for s, model in enumerate(seq_models):
        for name_, p in model.named_parameters():
            torch.testing.assert_close(
                ens.params_dict()[name_][s], p.detach(), rtol=1e-4, atol=1e-5
            )
