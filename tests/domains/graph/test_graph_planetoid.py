"""Planetoid node classification: data shapes, full-batch training, missing data."""

from __future__ import annotations

import pytest
import torch

from domains import create_workload
from samcore import SAM, train_step

pytestmark = pytest.mark.graph


def test_cora_shapes_and_two_sam_steps(shared_data, graph_cache, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(graph_cache))
    workload = create_workload("planetoid-cora", "smoke")
    workload.setup_data(shared_data, torch.device("cpu"))
    data = workload.data
    assert data.num_nodes == 2708 and int(data.y.max()) + 1 == 7 and data.x.shape[1] == 1433
    assert (int(data.train_mask.sum()), int(data.val_mask.sum()), int(data.test_mask.sum())) == (
        140,
        500,
        1000,
    )
    assert workload.steps_per_epoch() == 1
    batches = list(workload.train_batches(0, torch.Generator()))
    assert len(batches) == 1 and batches[0] is data  # full batch
    model = workload.build_model(2.0)
    assert model.conv1.lin.weight.shape == (32, 1433)
    opt = SAM(model.parameters(), torch.optim.Adam, rho=0.05, lr=0.01)
    for _ in range(2):
        res = train_step(model, opt, workload.loss, batches[0])
        assert torch.isfinite(res.loss)
    assert all(p.grad is not None for p in model.parameters())
    out = workload.evaluate(model.eval())
    assert {"train/loss", "val/acc", "test/acc"} <= set(out) and 0 <= out["val/acc"] <= 1


def test_missing_extra_names_the_pip_command(monkeypatch):
    import sys

    from domains.graph.common import require_graph_extra

    monkeypatch.setitem(sys.modules, "ogb", None)  # as if the graph extra were not installed
    with pytest.raises(ImportError, match=r"pip install -e \.\[graph\]"):
        require_graph_extra("torch_geometric", "ogb")
