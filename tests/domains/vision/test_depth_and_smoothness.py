"""Issue 22 on the vision workloads: the ``depth`` field (App. E) with parameter counts checked
against hand counts, run ids of depth-2 runs unchanged, and the per-evaluation smoothness / PL
metrics (Fig. 21)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from domains import ConfigError, create_workload
from runners.engine.config import RunConfig
from samcore import count_params

pytestmark = pytest.mark.vision


def _mlp_hand_count(depth: int, units: int = 1000) -> int:
    # 784 -> units (weights + biases), (depth - 1) x units -> units, units -> 10
    return 784 * units + units + (depth - 1) * (units * units + units) + units * 10 + 10


def _resnet_hand_count(blocks: int, f: int = 64) -> int:
    """CIFAR ResNet with ``blocks`` BasicBlocks per stage, convs without bias, BN = 2 per channel."""

    def block(c_in: int, c_out: int) -> int:
        n = 9 * c_in * c_out + 2 * c_out + 9 * c_out * c_out + 2 * c_out
        if c_in != c_out:  # 1x1 projection + BN on the first block of stages 2-4
            n += c_in * c_out + 2 * c_out
        return n

    total = 9 * 3 * f + 2 * f  # stem conv + BN
    c_in = f
    for i in range(4):
        c = f * 2**i
        total += block(c_in, c) + (blocks - 1) * block(c, c)
        c_in = c
    return total + 8 * f * 10 + 10  # fc


def test_hand_counts_are_the_papers_sizes():
    # the hand counts themselves against the paper's rounded sizes (App. E) and Fig. 1's 11.17M
    assert [round(_mlp_hand_count(d) / 1e5) / 10 for d in (1, 2, 3)] == [0.8, 1.8, 2.8]
    assert [round(_resnet_hand_count(b) / 1e5) / 10 for b in (1, 2, 8)] == [4.9, 11.2, 48.8]
    assert _resnet_hand_count(2) == 11_173_962 and _resnet_hand_count(2, 4) == 44_622


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_mnist_depth_parameter_counts(depth):
    w = create_workload("mnist-mlp", "paper-depth", depth=depth)
    assert count_params(w.build_model(1.0)) == _mlp_hand_count(depth)
    # width multiplies every hidden layer: 0.5x = layers of 500
    assert count_params(w.build_model(0.5)) == _mlp_hand_count(depth, 500)


@pytest.mark.parametrize("depth", [1, 2, 8])
def test_resnet_depth_parameter_counts(depth):
    w = create_workload("cifar10-resnet18", "paper", depth=depth)
    with torch.device("meta"):
        model = w.build_model(1.0)
    assert count_params(model) == _resnet_hand_count(depth)
    assert len(model.blocks) == 4 * depth


def test_mnist_default_depth_is_lenet_and_bad_depths_fail():
    w = create_workload("mnist-mlp", "paper")
    assert count_params(w.build_model(1.0)) == 266_610  # LeNet-300-100, unchanged
    assert create_workload("mnist-mlp", "paper", hidden="300,100,50", depth=3).config.depth == 3
    with pytest.raises(ConfigError, match="depth"):
        create_workload("mnist-mlp", "paper", depth=3)  # two sizes for three layers
    with pytest.raises(ConfigError, match="depth"):
        create_workload("mnist-mlp", "paper-depth", depth=0)


# ids of the same runs computed at commit 17f43d0, before the depth field existed
_IDS_BEFORE = [
    ("mnist-mlp", "paper", "sgd", 0.0, "9d52b6c936be9a8d8470"),
    ("cifar10-resnet18", "paper", "sam", 0.1, "5fcc80b2cf70882cd433"),
    ("mnist-mlp", "quick", "sam", 0.05, "c9a600f51416698e7359"),
]


@pytest.mark.parametrize(("name", "preset", "opt", "rho", "run_id"), _IDS_BEFORE)
def test_depth_two_keeps_run_ids_other_depths_do_not(name, preset, opt, rho, run_id):
    def cfg(**fields):
        wc = {**dataclasses.asdict(create_workload(name, preset).config), **fields}
        return RunConfig(
            workload=name,
            preset=preset,
            width=1.0,
            optimizer=opt,
            base_optimizer="sgd",
            rho=rho,
            workload_config=wc,
        )

    assert cfg().workload_config["depth"] == 2
    assert cfg().run_id == run_id
    assert cfg(depth=3).run_id != run_id
    assert cfg(smoothness_radius=0.1).run_id != run_id


def test_smoothness_metrics_at_each_evaluation():
    w = create_workload("mnist-mlp", "tiny", smoothness_radius=0.1)
    w.setup_data(".", torch.device("cpu"))
    model = w.build_model(0.25)
    before = [p.detach().clone() for p in model.parameters()]
    out = w.evaluate(model)
    assert {"train/smoothness", "train/pl_ratio", "train/grad_norm"} <= set(out)
    assert out["train/smoothness"] > 0 and math.isfinite(out["train/smoothness"])
    # PL ratio = ||g||^2 / (2 L): L is the train loss the same evaluation reports
    expected = out["train/grad_norm"] ** 2 / (2 * out["train/loss"])
    assert out["train/pl_ratio"] == pytest.approx(expected, rel=1e-4)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    plain = create_workload("mnist-mlp", "tiny")
    plain.setup_data(".", torch.device("cpu"))
    assert "train/smoothness" not in plain.evaluate(model)
