"""runners/engine/memory.py: the activation term and the seed-ensemble factor, against sizes
counted by hand from the models' layers."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from torch import nn

from domains import create_workload
from runners.engine.memory import MemoryCheckError, activation_values, estimate_bytes
from runners.engine.sweep_spec import load_sweep
from runners.sweep import _check_memory, _tasks, _Workloads


def test_mnist_mlp_estimate_by_hand_with_a_two_seed_ensemble():
    """mnist-mlp tiny at 0.5x: Flatten 784 -> Linear 150 -> ReLU -> Linear 50 -> ReLU ->
    Linear 10. Parameters 784*150+150 + 150*50+50 + 50*10+10 = 125,810, x 4 bytes x 4 copies;
    activations per example 784 + 150 + 150 + 50 + 50 + 10 = 1,194, x batch 32 x 4 bytes; both
    x 2 seeds; data (64 + 32 + 32) images x 784 pixels x 4 bytes, once."""
    workload = create_workload("mnist-mlp", "tiny")
    c = workload.config
    assert (c.hidden_sizes, c.batch_size, c.num_train, c.num_val, c.num_test) == (
        (300, 100), 32, 64, 32, 32,
    )  # fmt: skip
    need, width = estimate_bytes(workload, [0.25, 0.5], ensemble_size=2)
    assert width == 0.5
    assert need == (125_810 * 16 + 32 * 1_194 * 4) * 2 + 128 * 784 * 4
    one, _ = estimate_bytes(workload, [0.5])
    assert need - one == 125_810 * 16 + 32 * 1_194 * 4  # the second seed's model


def test_synthetic_regression_activations_per_example():
    """Linear(100, h) -> ReLU -> Linear(h, 1): h + h + 1 values per example."""
    workload = create_workload("synthetic-regression", "smoke")
    h = workload.config.base_hidden * 2
    model = nn.Sequential(nn.Linear(100, h), nn.ReLU(), nn.Linear(h, 1)).to("meta")
    assert activation_values(workload, model) == 2 * h + 1


def test_widest_dimension_fallback_without_an_input_shape():
    """No image_shape or input_dim: each layer's widest dimension, one position's worth:
    Embedding dim 16 + Linear out 32 + Conv1d out channels 8 (the vocabulary does not count)."""
    model = nn.Sequential(nn.Embedding(1000, 16), nn.Linear(16, 32), nn.Conv1d(32, 8, 3))
    workload = SimpleNamespace(config=SimpleNamespace(batch_size=4))
    assert activation_values(workload, model) == 16 + 32 + 8


def test_sweep_checks_memory_with_its_seed_ensemble_size(tmp_path, monkeypatch):
    """A machine with room for one model but not three: refused where 3 seeds train as one
    model, accepted where each trains alone (--no-seed-ensemble)."""
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "preset: tiny\nseeds: [0, 1, 2]\noptimizers: [base]\n"
        "entries:\n  - {workload: mnist-mlp, widths: [0.5x]}\n"
    )
    configs = load_sweep(spec).configs
    workload = create_workload("mnist-mlp", "tiny")
    one, _ = estimate_bytes(workload, [0.5])
    model = 125_810 * 16 + 32 * 1_194 * 4
    monkeypatch.setattr("runners.engine.memory.machine_memory", lambda: one + model)  # 2 fit
    workloads = _Workloads()
    _check_memory(_tasks(configs, False, workloads), workloads)  # one model at a time: fits
    with pytest.raises(MemoryCheckError, match="mnist-mlp at width 0.5x needs about"):
        _check_memory(_tasks(configs, True, workloads), workloads)


def test_run_py_checks_memory_with_its_seed_ensemble_size(tmp_path, monkeypatch, capsys):
    from runners.run import main as run_main

    one, _ = estimate_bytes(create_workload("mnist-mlp", "tiny"), [0.5])
    model = 125_810 * 16 + 32 * 1_194 * 4
    monkeypatch.setattr("runners.engine.memory.machine_memory", lambda: one + model)
    argv = ["--workload", "mnist-mlp", "--preset", "tiny", "--width", "0.5x", "--seeds", "0,1,2"]
    argv += ["--optimizer", "base", "--results", str(tmp_path / "r"), "--no-progress"]
    assert run_main(argv) == 2  # three seeds as one model: three models' memory
    assert "needs about" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    assert run_main([*argv, "--no-seed-ensemble"]) == 0  # one model at a time
