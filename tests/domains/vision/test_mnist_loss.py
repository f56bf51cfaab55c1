"""mnist-mlp's squared-loss option (issue 22, Fig. 6): the loss against a hand computation, the
evaluation's loss on the same definition, and run ids of cross-entropy runs unchanged."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from domains import ConfigError, create_workload
from runners.engine.config import RunConfig


def _run_id(workload) -> str:
    return RunConfig(
        workload="mnist-mlp",
        preset="paper",
        width=1.0,
        optimizer="sam",
        base_optimizer="sgd",
        seed=0,
        rho=0.1,
        workload_config=dataclasses.asdict(workload.config),
    ).run_id


def test_mse_is_half_the_squared_distance_to_one_hot_targets():
    w = create_workload("mnist-mlp", "tiny", loss="mse")
    logits = torch.tensor([[1.0, 0.0, 2.0] + [0.0] * 7, [0.5] * 10])
    y = torch.tensor([2, 0])
    # example 0: (1-0)^2 + (2-1)^2 = 2 -> 1.0; example 1: (0.5-1)^2 + 9 * 0.25 = 2.5 -> 1.25
    assert w.criterion(logits, y).item() == pytest.approx((1.0 + 1.25) / 2)
    assert w.criterion(logits, y, reduction="sum").item() == pytest.approx(2.25)
    ce = create_workload("mnist-mlp", "tiny").criterion(logits, y).item()
    hand_ce = (
        -math.log(math.exp(2) / (math.exp(1) + math.exp(2) + 8))
        - math.log(1 / 10)  # uniform logits
    ) / 2
    assert ce == pytest.approx(hand_ce)


def test_training_and_evaluation_use_the_chosen_loss():
    w = create_workload("mnist-mlp", "tiny", loss="mse")
    w.setup_data(None, torch.device("cpu"))
    model = w.build_model(0.25)
    nn.init.zeros_(model[-1].weight)
    nn.init.zeros_(model[-1].bias)  # logits 0: squared loss 0.5 * 1 = 0.5 on every example
    batch = next(w.train_batches(0, torch.Generator().manual_seed(0)))
    assert w.loss(model, batch)[0].item() == pytest.approx(0.5)
    metrics = w.evaluate(model)
    assert metrics["train/loss"] == pytest.approx(0.5)
    assert metrics["test/loss"] == pytest.approx(0.5)


def test_unknown_loss_is_a_config_error():
    with pytest.raises(ConfigError):
        create_workload("mnist-mlp", "tiny", loss="hinge")


def test_cross_entropy_run_ids_are_unchanged_by_the_loss_field():
    w = create_workload("mnist-mlp", "paper")
    stored = dataclasses.asdict(w.config)
    del stored["loss"]  # a config stored before the field existed
    old = RunConfig(
        workload="mnist-mlp",
        preset="paper",
        width=1.0,
        optimizer="sam",
        base_optimizer="sgd",
        seed=0,
        rho=0.1,
        workload_config=stored,
    ).run_id
    assert _run_id(w) == old
    assert _run_id(create_workload("mnist-mlp", "paper", loss="mse")) != old


def test_paper_run_id_is_the_one_computed_before_issue_22():
    # computed at commit 17f43d0, before the loss (and depth) fields were added
    assert _run_id(create_workload("mnist-mlp", "paper")) == "9d8eb8285b241b9ada15"
