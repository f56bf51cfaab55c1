"""Issue 22's ablation sweep files expand to the paper's grids (App. E, Fig. 18): values written
out from PAPERS.md / the issue, compared with the expanded run configs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from runners.engine.sweep_spec import load_sweep

SWEEPS = Path(__file__).resolve().parents[2] / "sweeps"


def _load(name):
    return load_sweep(SWEEPS / name).configs


def test_depth_sweep_is_the_papers_grid():
    cfgs = _load("ablation-depth.yaml")
    mlp = [c for c in cfgs if c.workload == "mnist-mlp"]
    assert {c.preset for c in mlp} == {"paper-depth"} and {c.width for c in mlp} == {1.0}
    assert sorted({c.workload_config["depth"] for c in mlp}) == [1, 2, 3]
    assert {tuple(c.workload_config["hidden"]) for c in mlp} == {(1000,)}
    resnet = [c for c in cfgs if c.workload == "cifar10-resnet18"]
    assert sorted({c.workload_config["depth"] for c in resnet}) == [1, 2, 8]
    assert {c.seed for c in cfgs} == {0, 1, 2}


@pytest.mark.slow  # expands sweeps/paper.yaml: every domain's workloads (~20 s)
def test_depth_two_runs_are_fig1_runs():
    """The depth-2 ResNet runs are Fig. 1's 1x runs: the same ids as sweeps/paper.yaml's."""
    resnet = [c for c in _load("ablation-depth.yaml") if c.workload == "cifar10-resnet18"]
    paper_ids = {c.run_id for c in _load("paper.yaml")}
    depth2 = [c for c in resnet if c.workload_config["depth"] == 2]
    assert depth2 and all(c.run_id in paper_ids for c in depth2)


def test_wd_grid_sweep():
    cfgs = _load("ablation-wd-grid.yaml")
    assert {c.width for c in cfgs} == {0.0625, 0.25, 0.5, 1.0}
    assert sorted({c.workload_config["weight_decay"] for c in cfgs}) == pytest.approx(
        [5e-5, 1e-4, 5e-4, 1e-3, 5e-3]
    )
    sam = Counter(
        (c.width, c.workload_config["weight_decay"]) for c in cfgs if c.optimizer == "sam"
    )
    assert set(sam.values()) == {9 * 3}  # the paper's 9 rhos x 3 seeds per (width, wd)


def test_sgd_400_sweep_pairs_base_400_with_sam_200():
    cfgs = _load("ablation-sgd-400.yaml")
    epochs = {(c.optimizer, c.workload_config["num_epochs"]) for c in cfgs}
    assert epochs == {("sgd", 400), ("sgd", 200), ("sam", 200)}
    assert len({c.width for c in cfgs}) == 7


def test_linearized_sweep():
    cfgs = _load("ablation-linearized.yaml")
    assert sorted({c.workload_config["alpha"] for c in cfgs}) == [1.0, 10.0, 100.0, 1000.0]
    assert sorted({c.rho for c in cfgs if c.optimizer == "sam"}) == [0.001, 0.01, 0.02]


@pytest.mark.parametrize(
    "name",
    ["depth", "wd-grid", "sgd-400", "linearized", "label-noise", "sparsity", "regularization"],
)
def test_quick_sweeps_load(name):
    cfgs = _load(f"ablation-{name}-quick.yaml")
    assert cfgs and {c.preset for c in cfgs} <= {"quick", "quick-depth"}


def test_quick_paper_yaml_ablations_cover_each_ablation():
    """The CPU versions of sweeps/paper.yaml's label-noise, sparsity, no-wd and ViT entries:
    run counts by hand (widths x settings x {base, SAM}, one seed) and the field that makes
    each an ablation."""
    noise = _load("ablation-label-noise-quick.yaml")  # 3 widths x 1 rate x 2
    assert len(noise) == 6 and {c.workload_config["label_noise"] for c in noise} == {0.5}
    assert {c.protocol for c in noise} == {"final"}  # the paper's label-noise protocol
    sparse = _load("ablation-sparsity-quick.yaml")  # CIFAR 3 x 2 masks x 2 + MNIST 3 x 2
    assert Counter(c.workload for c in sparse) == {"cifar10-resnet18": 12, "mnist-mlp": 6}
    cifar = [c for c in sparse if c.workload == "cifar10-resnet18"]
    assert {c.workload_config["sparsity_method"] for c in cifar} == {"random", "snip"}
    assert {c.workload_config["match_params_of"] for c in cifar} == {0.0625}
    assert {c.workload_config["match_params_of"] for c in sparse if c not in cifar} == {0.25}
    reg = _load("ablation-regularization-quick.yaml")  # 3 widths x 2, twice
    assert Counter(c.workload for c in reg) == {"cifar10-resnet18": 6, "cifar10-vit": 6}
    resnet = [c for c in reg if c.workload == "cifar10-resnet18"]
    assert {c.workload_config["weight_decay"] for c in resnet} == {0.0}
    # 3 epochs, not the wd-grid quick sweep's 2: otherwise wd 0 would join its grid's setup
    assert {c.workload_config["num_epochs"] for c in resnet} == {3}
    assert {c.workload_config["num_epochs"] for c in _load("ablation-wd-grid-quick.yaml")} == {2}
