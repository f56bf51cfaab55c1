"""Every language workload: smoke preset on the held data, two SAM steps, then evaluation."""

from __future__ import annotations

import math

import pytest
import torch

from domains import create_workload, list_workloads
from samcore import SAM, train_step

pytestmark = pytest.mark.language


@pytest.mark.parametrize("name", list_workloads(domain="language"))
def test_smoke_two_sam_steps_and_evaluate(name, data_root):
    w = create_workload(name, "smoke")
    w.setup_data(data_root, torch.device("cpu"))
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


@pytest.mark.parametrize("name", list_workloads(domain="language"))
def test_same_seed_same_losses(name, data_root):
    """Vocabulary, batches, initialisation and dropout are all fixed by the seeds."""
    w = create_workload(name, "smoke")
    w.setup_data(data_root, torch.device("cpu"))

    def losses() -> list[float]:
        torch.manual_seed(1)
        model = w.build_model(min(w.widths)).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        batches = w.train_batches(0, torch.Generator().manual_seed(2))
        return [train_step(model, opt, w.loss, next(batches)).loss.item() for _ in range(2)]

    assert losses() == losses()
