"""CUDA paths (run where a GPU is present; skipped elsewhere)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from samcore import SAM, train_step

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _setup(device):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 4)).to(
        device
    )
    g = torch.Generator().manual_seed(1)
    batch = (
        torch.randn(64, 8, generator=g).to(device),
        torch.randint(0, 4, (64,), generator=g).to(device),
    )
    return model, batch


def _ce(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x).float(), y), {}


def test_cuda_sam_matches_cpu():
    results = []
    for device in ("cpu", "cuda"):
        model, batch = _setup(device)
        opt = SAM(model.parameters(), torch.optim.SGD, rho=0.1, lr=0.1, momentum=0.9)
        for _ in range(3):
            train_step(model, opt, _ce, batch)
        results.append([p.detach().cpu() for p in model.parameters()])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cuda_autocast_with_grad_scaler_trains(dtype):
    model, batch = _setup("cuda")
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.1)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    first = None
    for _ in range(20):
        res = train_step(model, opt, _ce, batch, scaler=scaler, autocast_dtype=dtype)
        first = res.loss.item() if first is None else first
    assert res.loss.item() < first
