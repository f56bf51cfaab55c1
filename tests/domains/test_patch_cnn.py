"""The signal-noise patch workload (Chen et al., NeurIPS 2023): data statistics, the model's
forward pass by hand, the parameter count, and the heatmap figure from a known store."""

from __future__ import annotations

import math

import pytest
import torch

from domains import create_workload
from results.store import Store
from results.theory_figures import patch_grid, patch_heatmap
from samcore import count_params, make_generator
from tests.results.known_store import start_toy_run


def test_patch_data_statistics():
    w = create_workload("synthetic-patch-cnn", "quick", dim=50, signal_strength=3.0)
    n = 20_000
    x, y, clean = w.sample(n, make_generator(0, "test"))
    assert x.shape == (n, 2, 50) and y.shape == clean.shape == (n,)
    assert set(y.unique().tolist()) == {-1.0, 1.0}
    mu = w.signal()
    assert mu.norm().item() == pytest.approx(3.0)
    sig_first = (x[:, 0] == clean[:, None] * mu).all(dim=1)
    sig_second = (x[:, 1] == clean[:, None] * mu).all(dim=1)
    assert bool((sig_first ^ sig_second).all())  # exactly one patch is the signal y~ * mu
    assert abs(sig_first.float().mean().item() - 0.5) < 0.02  # random patch order
    noise = torch.where(sig_first[:, None], x[:, 1], x[:, 0])
    assert (noise @ mu).abs().max().item() < 1e-4  # orthogonal to mu
    # covariance sigma_p^2 (I - u u^T): per-coordinate variance 1 off the mu direction
    assert noise[:, 1:].var(dim=0).mean().item() == pytest.approx(1.0, abs=0.02)
    # flip rate: binomial(20000, 0.1) has std 0.0021
    assert abs((y != clean).float().mean().item() - 0.1) < 0.01
    assert abs(clean.mean().item()) < 0.03  # balanced classes


def test_forward_matches_a_hand_computation():
    w = create_workload("synthetic-patch-cnn", "smoke", dim=2, base_filters=2)
    model = w.build_model(1.0)
    with torch.no_grad():  # w_{+1,1}, w_{+1,2}, w_{-1,1}, w_{-1,2}
        model.weight.copy_(torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [-1.0, 0.0]]]))
    x = torch.tensor([[[2.0, -1.0], [0.5, 3.0]]])  # patches (2, -1) and (0.5, 3)
    # F_{+1} = (relu(2) + relu(0.5) + relu(-1) + relu(3)) / 2 = 5.5 / 2
    # F_{-1} = (relu(1) + relu(3.5) + relu(-2) + relu(-0.5)) / 2 = 4.5 / 2
    assert model(x).item() == pytest.approx(0.5)
    loss, extra = w.loss(model, (x, torch.tensor([-1.0])))
    assert loss.item() == pytest.approx(math.log1p(math.exp(0.5)))
    assert extra["error"].item() == 1.0


@pytest.mark.parametrize("width,m", [(1.0, 10), (2.0, 20), (8.0, 80)])
def test_parameter_count_is_2_m_d(width, m):
    w = create_workload("synthetic-patch-cnn", "quick", dim=123)
    assert count_params(w.build_model(width)) == 2 * m * 123


def test_bad_flip_prob_is_rejected():
    with pytest.raises(ValueError, match="flip_prob"):
        create_workload("synthetic-patch-cnn", "smoke", flip_prob=0.5)


def _add_run(store, run_id, optimizer, mu, d, errors, seed=0):
    start_toy_run(
        store,
        run_id,
        workload="synthetic-patch-cnn",
        optimizer=optimizer,
        seed=seed,
        rho=0.05 if optimizer == "sam" else 0.0,
        config={"run": {"workload_config": {"signal_strength": mu, "dim": d}}},
        n_params=2 * 10 * d,
    )
    for step, e in enumerate(errors, 1):
        store.log_metrics(run_id, step, step, {"test/error": e})
    store.finish_run(run_id, "done", summary={})


def test_heatmap_groups_runs_by_stored_config_and_writes_the_figure(tmp_path):
    with Store(tmp_path / "runs.sqlite") as store:
        _add_run(store, "a", "sgd", 1.0, 100, [0.5, 0.30])
        _add_run(store, "b", "sgd", 1.0, 100, [0.5, 0.20], seed=1)
        _add_run(store, "c", "sam", 1.0, 100, [0.5, 0.10])
        _add_run(store, "d", "sgd", 2.0, 400, [0.5, 0.40])
        grid = patch_grid(store)
        assert grid["base"] == {(1.0, 100): pytest.approx(0.25), (2.0, 400): 0.40}
        assert grid["sam"] == {(1.0, 100): 0.10}  # the final value, not the first
        path = patch_heatmap(store, tmp_path)
    assert path == tmp_path / "figures" / "patch_heatmap_w1.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp left


def test_heatmap_on_an_empty_store_says_so(tmp_path):
    with Store(tmp_path / "runs.sqlite") as store, pytest.raises(ValueError, match="no done"):
        patch_heatmap(store, tmp_path)
