"""The theory workloads of issue 22: 1-D ReLU nets (Figs. 2-3), matrix factorization (linear
convergence) and Allen-Zhu et al.'s two-layer regression (Fig. 22), checked against hand
counts, closed forms and hand-computed values; the Allen-Zhu sweeps' run counts."""

from __future__ import annotations

import math

import pytest
import torch

from domains import create_workload
from domains.synthetic.allen_zhu import target_function
from runners.engine.sweep_spec import load_sweep
from samcore import count_params

pytestmark = pytest.mark.synthetic


def _setup(name: str, preset: str = "smoke", **kw):
    w = create_workload(name, preset, **kw)
    w.setup_data(None, torch.device("cpu"))
    return w


# ---------------------------------------------------------------- 1-D ReLU nets
def test_relu_1d_data_init_and_parameter_count():
    w = _setup("synthetic-relu-1d")
    assert w.x[0, 0].item() == pytest.approx(-5.5 / 4 + 0.07)  # Maennel et al.'s first point
    assert w.y[:, 0].tolist() == pytest.approx(
        [0.345 + v for v in (-2, 1.5, 0, 0, 2, 1, 0, -1, 0, 1, 2, -1)]
    )
    for m in (5, 10, 100, 1000):
        assert count_params(w.build_model(float(m))) == 3 * m  # w, b, a per neuron
    model = w.build_model(1000.0)
    assert set(model[0].weight.abs().flatten().tolist()) == {2.5}  # +-2.5, random sign
    assert 0.35 < (model[0].weight > 0).float().mean().item() < 0.65
    assert model[2].weight.std().item() == pytest.approx(4.0, rel=0.1)  # a ~ 4 N(0, 1)
    assert model[0].bias.std().item() == pytest.approx(2.5, rel=0.1)


def test_relu_1d_batches_are_6_distinct_points_and_loss_is_half_mse():
    w = _setup("synthetic-relu-1d")
    batches = list(w.train_batches(0, torch.Generator().manual_seed(0)))
    assert len(batches) == w.config.steps_per_epoch
    for x, _ in batches[:20]:
        assert x.shape == (6, 1) and len(set(x[:, 0].tolist())) == 6
    model = w.build_model(5.0)
    torch.nn.init.zeros_(model[2].weight)  # f = 0: loss = 0.5 * mean(y^2)
    hand = 0.5 * sum(y * y for y in w.y[:, 0].tolist()) / 12
    assert w.evaluate(model)["train/loss"] == pytest.approx(hand)


# ---------------------------------------------------------------- matrix factorization
def test_matrix_factorization_counts_and_closed_form_losses():
    w = _setup("synthetic-matrix-factorization", "quick")
    assert count_params(w.build_model(4.0)) == 4 * (6 + 10)
    assert count_params(w.build_model(10.0)) == 10 * (6 + 10)
    U, S, Vh = torch.linalg.svd(w.A, full_matrices=False)  # A = U diag(S) Vh, S: 6 values
    for k in (4, 10):
        model = w.build_model(float(k))
        r = min(k, 6)  # the best rank-k fit is the truncated SVD (Eckart-Young)
        with torch.no_grad():
            model[0].weight.zero_()
            model[1].weight.zero_()
            model[0].weight[:r] = S[:r, None] * Vh[:r]
            model[1].weight[:, :r] = U[:, :r]
        loss = w.evaluate(model)["test/loss"]
        # E ||(A - A_k) x||^2 = sum of the dropped squared singular values, x ~ N(0, I)
        expected = float((S[r:] ** 2).sum())
        if k == 10:
            assert loss == pytest.approx(0.0, abs=1e-9)
        else:
            assert loss == pytest.approx(expected, rel=0.15)  # 1,000 test draws


# ---------------------------------------------------------------- Allen-Zhu et al.
def test_allen_zhu_target_on_hand_points():
    x = torch.tensor([[0.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5]])
    y = target_function(x)[:, 0].tolist()
    assert y[0] == pytest.approx(4 * math.cos(7))
    assert y[1] == pytest.approx((math.sin(3) - 2) ** 2)
    assert y[2] == pytest.approx((3 * math.sin(1.5) - 2) ** 2 * math.cos(3.5))


def test_allen_zhu_data_on_the_sphere_and_fixed_second_layer():
    w = _setup("synthetic-allen-zhu")
    x, y = w.data["train"]
    assert x.norm(dim=1).sub(1).abs().max().item() < 1e-6
    assert torch.allclose(y, target_function(x))
    m = 1000
    model = w.build_model(10.0)
    assert count_params(model) == 5 * m  # W (m x 4) + b (m): the second layer is not trained
    assert model.hidden.weight.std().item() == pytest.approx(1 / math.sqrt(m), rel=0.05)
    assert model.a.std().item() == pytest.approx(1.0, rel=0.1)
    # the fixed layer is a buffer: no optimizer (base or SAM) ever sees or perturbs it
    assert [n for n, _ in model.named_parameters()] == ["hidden.weight", "hidden.bias"]
    w.loss(model, (x[:50], y[:50]))[0].backward()
    assert model.a.grad is None and model.hidden.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("spec", "runs"),
    [
        # 3 widths x 1 lr (2/m) x (1 base + 2 rhos), 1 seed
        ("sweeps/theory-allen-zhu-quick.yaml", 3 * 1 * 3),
        # 4 widths x 6 lrs x (1 base + 5 rhos) x 3 seeds
        ("sweeps/theory-allen-zhu.yaml", 4 * 6 * 6 * 3),
    ],
)
def test_allen_zhu_sweeps_expand_to_the_grid(spec, runs):
    from tests.conftest import REPO

    sweep = load_sweep(REPO / spec)
    assert len(sweep.configs) == runs
    assert {c.workload for c in sweep.configs} == {"synthetic-allen-zhu"}


def _tangent_features(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """J (n, trainable parameters): the per-example gradients of the output, by autograd."""
    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in model.named_parameters()}

    def f(p, xi):
        return functional_call(model, p, (xi[None],))[0, 0]

    per_example = vmap(grad(f), in_dims=(None, 0))(params, x)
    return torch.cat([g.flatten(1) for g in per_example.values()], dim=1)


def test_allen_zhu_hessian_trace_at_init_is_2m():
    """The loss is piecewise quadratic in the trained layer (ReLU, fixed a), so its Hessian is
    2/n J^T J; by hand its trace is E[sum_r a_r^2 1[active] (||x||^2 + 1)] * 2 = 2m
    (a_r^2 ~ 1, a unit is active half the time, ||x|| = 1). This sets the stable lr ~ 1/m."""
    w = _setup("synthetic-allen-zhu", "quick")
    x = w.data["train"][0]
    m = 1000
    traces = []
    for seed in range(3):
        torch.manual_seed(seed)
        J = _tangent_features(w.build_model(10.0), x)
        traces.append(2 / len(x) * J.pow(2).sum().item())
    assert sum(traces) / 3 == pytest.approx(2 * m, rel=0.1)


def test_allen_zhu_quick_lrs_are_below_the_stability_limit():
    """Every (width, lr) of the quick sweep is below SGD's limit 2 / lambda_max of the Hessian at
    init (three init seeds). The first quick grid (lr 1e-2 at every m) was above it at m 500 and
    1000 (lambda_max ~ 0.7m) and fit little (test MSE 26-28 against 30.9 for a constant); the
    quick grid's lr is 2/m: within 0.5-1x of the limit, not far below it (slow)."""
    from tests.conftest import REPO

    w = _setup("synthetic-allen-zhu", "quick")
    x = w.data["train"][0]
    pairs = {
        (c.width, c.workload_config["learning_rate"])
        for c in load_sweep(REPO / "sweeps/theory-allen-zhu-quick.yaml").configs
    }
    assert {width for width, _ in pairs} == {1.0, 5.0, 10.0}
    for width in sorted({width for width, _ in pairs}):
        lam = 0.0
        for seed in range(3):
            torch.manual_seed(seed)
            J = _tangent_features(w.build_model(width), x)
            lam = max(lam, 2 / len(x) * torch.linalg.eigvalsh(J @ J.T).max().item())
        assert 0.5 * width * 100 < lam < width * 100  # ~0.7m
        for lr in (lr for wd, lr in pairs if wd == width):
            assert 1 < lr * lam < 2, (width, lr, lam)


def test_allen_zhu_short_run_beats_the_constant_predictor():
    """60 epochs of plain SGD at m = 100 and the quick grid's larger lr there (2e-2) fit a
    quarter of the training variance and beat the best constant on test (MSE 30.9)."""
    w = _setup("synthetic-allen-zhu", "quick")
    y, yt = w.data["train"][1], w.data["test"][1]
    torch.manual_seed(0)
    model = w.build_model(1.0)
    opt = torch.optim.SGD(model.parameters(), lr=2e-2)
    gen = torch.Generator().manual_seed(0)
    for epoch in range(60):
        for batch in w.train_batches(epoch, gen):
            opt.zero_grad()
            w.loss(model, batch)[0].backward()
            opt.step()
    ev = w.evaluate(model)
    assert ev["train/mse"] < 0.8 * y.var(correction=0).item()
    assert ev["test/mse"] < 0.9 * (yt - y.mean()).pow(2).mean().item()
