"""Every language workload: smoke preset on the held data, two SAM steps, then evaluation;
and the same seed gives the same losses."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch

from domains import create_workload, list_workloads
from samcore import SAM, train_step

pytestmark = pytest.mark.language

_READY: dict = {}


@pytest.fixture
def smoke_workload(request, data_root):
    """The smoke workload with its data, set up once per test session."""
    name = request.param
    if name not in _READY:
        w = create_workload(name, "smoke")
        w.setup_data(Path(os.environ["SAM_DATA"]), torch.device("cpu"))
        _READY[name] = w
    return _READY[name]


NAMES = list_workloads(domain="language")


@pytest.mark.parametrize("smoke_workload", NAMES, indirect=True)
def test_smoke_two_sam_steps_and_evaluate(smoke_workload):
    w = smoke_workload
    torch.manual_seed(0)
    model = w.build_model(min(w.widths))
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.01)
    batches = w.train_batches(0, torch.Generator().manual_seed(0))
    model.train()
    for _ in range(2):
        res = train_step(model, opt, w.loss, next(batches), micro_batch_size=16)
        assert torch.isfinite(res.loss) and "acc" in res.metrics
    model.eval()
    metrics = w.evaluate(model)
    for key in ("train/loss", "train/acc", "val/loss", "val/acc", "test/acc"):
        assert math.isfinite(metrics[key]), (key, metrics)
    assert 0 <= metrics["val/acc"] <= 100


@pytest.mark.parametrize("smoke_workload", NAMES, indirect=True)
def test_same_seed_same_losses(smoke_workload):
    """Batches, initialisation and dropout are all fixed by the seeds."""
    w = smoke_workload

    def losses() -> list[float]:
        torch.manual_seed(1)
        model = w.build_model(min(w.widths)).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        batches = w.train_batches(0, torch.Generator().manual_seed(2))
        return [train_step(model, opt, w.loss, next(batches)).loss.item() for _ in range(2)]

    assert losses() == losses()
