"""Registry behaviour, and the registry-wide smoke test every workload gets for free."""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import pytest
import torch

from domains import (
    ConfigError,
    MissingDataError,
    UnknownWorkloadError,
    create_workload,
    default_workload,
    domain_names,
    get_spec,
    list_workloads,
    register,
    resolve_data_root,
)
from samcore import SAM, count_params, train_step


def test_domains_and_default_workload():
    assert {"synthetic", "vision", "language", "graph", "rl"} <= set(domain_names())
    assert default_workload("synthetic") == "synthetic-regression"
    assert "synthetic-regression" in list_workloads("synthetic-*")
    with pytest.raises(UnknownWorkloadError, match="unknown domain"):
        list_workloads(domain="chemistry")


def test_unknown_workload_lists_the_known_ones():
    with pytest.raises(UnknownWorkloadError, match="synthetic-regression"):
        get_spec("synthetic-regresion")


def test_duplicate_registration_is_an_error():
    with pytest.raises(ValueError, match="already registered"):
        register("synthetic-regression", domain="synthetic")(lambda **kw: None)


def test_overrides_are_checked_and_typed():
    w = create_workload(
        "synthetic-regression", "smoke", num_epochs="3", learning_rate=1, lr_milestones="0.3,0.6"
    )
    assert w.config.num_epochs == 3 and isinstance(w.config.num_epochs, int)
    assert w.config.learning_rate == 1.0 and isinstance(w.config.learning_rate, float)
    assert w.config.lr_milestones == (0.3, 0.6)
    with pytest.raises(ConfigError, match="unknown config key 'num_epoch'"):
        create_workload("synthetic-regression", "smoke", num_epoch=3)
    with pytest.raises(ConfigError, match="integer"):
        create_workload("synthetic-regression", "smoke", num_epochs="3.5")
    with pytest.raises(ConfigError, match="unknown preset"):
        create_workload("synthetic-regression", "fast")


def test_data_root_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("SAM_DATA", str(tmp_path))
    assert resolve_data_root(None) == tmp_path
    assert resolve_data_root("/x") == Path("/x")
    monkeypatch.delenv("SAM_DATA")
    assert resolve_data_root(None).name == "sam-overparam"


def test_missing_data_error_names_everything():
    err = MissingDataError("MNIST", "/data/MNIST/raw", "run with --data-root or go online")
    assert "MNIST" in str(err) and "/data/MNIST/raw" in str(err) and "--data-root" in str(err)


def _data_root():
    return resolve_data_root(os.environ.get("SAM_DATA"))


def _batches(workload, n):
    out, epoch = [], 0
    while len(out) < n:
        for batch in workload.train_batches(epoch, torch.Generator().manual_seed(epoch)):
            out.append(batch)
            if len(out) == n:
                break
        epoch += 1
    return out


@pytest.mark.parametrize("name", list_workloads())
def test_every_workload_smoke_two_sam_steps(name):
    """Tiny (synthetic-data) preset where the workload has one, else smoke; smallest width:
    finite loss, every parameter gets a gradient, eval has the target metric on val and test."""
    workload = create_workload(name, "tiny" if "tiny" in get_spec(name).presets else "smoke")
    if workload.owns_loop:  # no batches or loss to step here: its domain's tests run fit()
        pytest.skip(f"{name} owns its training loop (Workload.fit); tested in its domain")
    try:
        workload.setup_data(_data_root(), torch.device("cpu"))
    except MissingDataError as exc:
        pytest.skip(str(exc))
    width = min(workload.widths)
    torch.manual_seed(0)
    model = workload.build_model(width)
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.01)
    for batch in _batches(workload, 2):  # full-batch workloads have one batch per epoch
        res = train_step(model, opt, workload.loss, batch)
        assert torch.isfinite(res.loss)
    opt.zero_grad()
    model.train()
    workload.loss(model, _batches(workload, 1)[0])[0].backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"
    model.eval()
    metrics = workload.evaluate(model)
    t = workload.target.name
    assert f"val/{t}" in metrics and f"test/{t}" in metrics
    if "splits" in inspect.signature(workload.evaluate).parameters:
        # the loop's two calls (every epoch; where validation improved) measure what one did
        selection = workload.evaluate(model, splits=("train", "val"))
        test = workload.evaluate(model, splits=("test",))
        assert f"val/{t}" in selection and f"test/{t}" in test
        assert not any(k.startswith("test/") for k in selection)
        assert {**selection, **test} == metrics


@pytest.mark.parametrize("name", list_workloads())
def test_parameter_count_strictly_increases_with_width(name):
    workload = create_workload(name, "paper" if "paper" in get_spec(name).presets else "smoke")
    counts = []
    for w in sorted(workload.widths):
        with torch.device("meta"):
            counts.append(count_params(workload.build_model(w)))
    assert all(a < b for a, b in zip(counts, counts[1:])), counts


def test_synthetic_parameter_counts_match_the_paper():
    workload = create_workload("synthetic-regression", "paper")
    counts = [count_params(workload.build_model(w)) for w in workload.widths]
    assert counts == [102 * h + 1 for h in range(100, 1001, 100)]
    assert counts[0] == 10_201 and counts[-1] == 102_001


# The paper's rho grids, written out from PAPERS.md ("Recipe details": the paper's Table 2).
PAPER_RHO_GRIDS = {
    "synthetic-regression": (0.001, 0.01, 0.05, 0.07, 0.1, 0.2, 0.3, 0.5, 0.7, 1, 2),
    "mnist-mlp": (0.01, 0.02, 0.05, 0.1, 0.2),
    "cifar10-resnet18": (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1),
    "imagenet-resnet50": (0.01, 0.02, 0.05, 0.1, 0.2),
    "atari-ppo": (0.01, 0.02, 0.05, 0.1, 0.2),
    "cifar10-vit": (0.01, 0.02, 0.05, 0.1, 0.2),
}


@pytest.mark.parametrize("name", sorted(PAPER_RHO_GRIDS))
def test_paper_rho_grid_at_every_width_is_the_papers(name):
    """rho_grid_at (a sweep's ``rho: paper``) gives PAPERS.md's grid at each paper width;
    ImageNet adds 0.005 for its two smallest models (base filters 16 and 32) only."""
    w = create_workload(name, "paper")
    for i, width in enumerate(w.widths):
        expected = set(PAPER_RHO_GRIDS[name])
        if name == "imagenet-resnet50" and i < 2:
            expected |= {0.005}
        grid = w.rho_grid_at(width)
        assert sorted(grid) == sorted(expected) and len(grid) == len(expected), (name, width)
    if name == "imagenet-resnet50":  # widths 0.25x and 0.5x = base filters 16 and 32
        assert w.widths[:2] == (0.25, 0.5)


def test_sweep_rho_paper_uses_the_per_width_grid(tmp_path):
    """The sweep's ``rho: paper`` expands ImageNet's per-width grid: 6 SAM rhos at the two
    smallest widths, 5 at the others."""
    from runners.engine.sweep_spec import load_sweep

    spec = tmp_path / "s.yaml"
    spec.write_text(
        "preset: paper\nseeds: [0]\noptimizers: [sam]\nrho: paper\n"
        "entries: [{workload: imagenet-resnet50, widths: all}]\n"
    )
    configs = load_sweep(spec).configs
    per_width: dict[float, set[float]] = {}
    for c in configs:
        per_width.setdefault(c.width, set()).add(c.rho)
    assert [len(per_width[w]) for w in (0.25, 0.5, 0.75, 1.0, 1.25)] == [6, 6, 5, 5, 5]
    assert 0.005 in per_width[0.5] and 0.005 not in per_width[0.75]
    assert [c.width for c in configs] == sorted(c.width for c in configs)  # width order kept


@pytest.mark.parametrize("name", list_workloads())
def test_declared_unit_is_the_one_the_report_knew(name):
    """Target.unit/scale (stored with each run) agree with results/paper_numbers.py's
    METRIC_UNITS, the report's fallback for stores written before runs stored their unit."""
    from results.paper_numbers import METRIC_UNITS

    label = create_workload(name, get_spec(name).presets[0]).target.label
    if name in METRIC_UNITS:
        assert label == METRIC_UNITS[name]


@pytest.mark.parametrize("name", list_workloads())
def test_ablation_fields_default_to_their_clean_value(name):
    """A config field named like an ablation axis (results/analysis.py ABLATION_FIELDS) with a
    non-zero default would move every run of the workload out of its own width table, the
    summary and Fig. 1 (issue 19); refused here, naming the field."""
    from results.analysis import ABLATION_FIELDS

    for preset in get_spec(name).presets:
        config = create_workload(name, preset).config
        for field in ABLATION_FIELDS:
            value = getattr(config, field, None)
            assert not value, f"{name} preset {preset}: {field} defaults to {value!r}, not 0"
