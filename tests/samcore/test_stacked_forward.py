"""The stacked MLP forward of seed ensembles (samcore/stacked_forward.py) and its fast loss path."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from samcore import build_optimizer, train_step
from samcore.ensemble import SeedEnsemble, _vmap_over_seeds, build_ensemble_optimizer, stack_batches
from samcore.stacked_forward import StackedLinear, stacked_forward_plan

S = 3


@pytest.mark.parametrize("bias", [True, False])
def test_stacked_linear_gradients_match_finite_differences(bias):
    """The hand-written backward against central differences (float64)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(S, 4, 5, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(S, 3, 5, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(S, 3, dtype=torch.float64, generator=g, requires_grad=True) if bias else None
    assert torch.autograd.gradcheck(StackedLinear.apply, (x, w, b))


def test_stacked_linear_weight_gradient_has_the_weight_layout():
    """No transposed-view gradient for the accumulation to copy (the point of the backward)."""
    x = torch.randn(S, 4, 5)
    w = torch.randn(S, 3, 5, requires_grad=True)
    StackedLinear.apply(x, w, None).sum().backward()
    assert w.grad.is_contiguous() and w.grad.stride() == w.stride()


def _models(seed_offset: int = 0) -> list[nn.Module]:
    out = []
    for s in range(S):
        torch.manual_seed(seed_offset + s)
        out.append(
            nn.Sequential(
                nn.Flatten(), nn.Linear(12, 7), nn.GELU(), nn.Linear(7, 5), nn.Tanh(),
                nn.Linear(5, 2, bias=False),
            )
        )  # fmt: skip
    return out


def test_stacked_forward_equals_each_models_own_forward():
    models = _models()
    ens = SeedEnsemble(models)
    assert ens.stacked_forward is not None
    x = torch.randn(S, 6, 3, 4)  # per seed (6, 3, 4), flattened by the model
    out = ens.stacked_forward(ens.params_dict(), x)
    for s, m in enumerate(models):
        torch.testing.assert_close(out[s], m(x[s]))


def test_linear_on_inputs_with_more_dims_acts_on_the_last():
    models = []
    for s in range(S):
        torch.manual_seed(s)
        models.append(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)))
    ens = SeedEnsemble(models)
    x = torch.randn(S, 6, 5, 4)  # per seed (6, 5, 4): a sequence of 5 feature vectors
    out = ens.stacked_forward(ens.params_dict(), x)
    assert out.shape == (S, 6, 5, 2)
    for s, m in enumerate(models):
        torch.testing.assert_close(out[s], m(x[s]))


@pytest.mark.parametrize(
    "model",
    [
        nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)),  # random masks
        nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2)),  # a layer it does not know
        nn.Sequential(nn.Conv1d(1, 1, 1)),
        nn.Linear(2, 2),  # not a Sequential
    ],
)
def test_unsupported_architectures_get_no_plan(model):
    assert stacked_forward_plan(model) is None


def test_a_forward_hook_disables_the_plan():
    model = nn.Sequential(nn.Linear(2, 2))
    model[0].register_forward_hook(lambda *a: None)
    assert stacked_forward_plan(model) is None


def _mse(model, batch):
    x, y = batch
    err = (model(x) - y).pow(2).mean()
    return err, {"err": err.detach(), "const": torch.tensor(1.0)}


def _mse_scaled_input(model, batch):  # hands the model a new tensor, not a batch leaf
    x, y = batch
    err = (model(x * 1.0) - y).pow(2).mean()
    return err, {"err": err.detach()}


def _batches(n: int) -> list:
    g = torch.Generator().manual_seed(7)
    return [
        stack_batches(
            [(torch.randn(6, 3, 4, generator=g), torch.randn(6, 2, generator=g)) for _ in range(S)]
        )
        for _ in range(n)
    ]  # every seed its own data


def _train(loss, sam: bool, spy: list | None = None, steps: int = 4, seq_loss=None):
    """(per-step seed losses, final stacked weights) of the ensemble, and sequential's."""
    ens = SeedEnsemble(_models())
    if spy is not None:
        plan = ens.stacked_forward

        def counting(params, x):
            spy.append(1)
            return plan(params, x)

        ens.stacked_forward = counting
    opt = build_ensemble_optimizer(ens, "sgd", lr=0.05, momentum=0.9, sam=sam, rho=0.1)
    seq = _models()
    seq_opts = [build_optimizer(m, "sgd", lr=0.05, momentum=0.9, sam=sam, rho=0.1) for m in seq]
    loss_fn = ens.loss_fn(loss)
    for batch in _batches(steps):
        res = train_step(ens, opt, loss_fn, batch)
        ref = [
            train_step(m, o, seq_loss or loss, (batch[0][s], batch[1][s]))
            for s, (m, o) in enumerate(zip(seq, seq_opts))
        ]
        torch.testing.assert_close(res.metrics["seed/loss"], torch.stack([r.loss for r in ref]))
        if "seed/const" in res.metrics:  # a metric that does not depend on the seed
            torch.testing.assert_close(res.metrics["seed/const"], torch.ones(S))
    for s, m in enumerate(seq):
        for name, p in m.named_parameters():
            torch.testing.assert_close(ens.params_dict()[name][s], p.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("sam", [False, True])
def test_mlp_losses_take_the_stacked_path_and_equal_sequential_runs(sam):
    calls: list = []
    _train(_mse, sam, spy=calls)
    # the first step learns which leaf is the input (general path); then every pass is stacked
    assert len(calls) == (3 if not sam else 2 * 3 + 1)


def test_a_loss_that_feeds_the_model_a_new_tensor_keeps_the_general_path():
    calls: list = []
    _train(_mse_scaled_input, sam=True, spy=calls)
    assert calls == []


def test_a_loss_that_changes_its_input_midway_falls_back_and_stays_exact():
    n = {"calls": 0}

    def switching(model, batch):
        n["calls"] += 1
        return _mse(model, batch) if n["calls"] <= 3 else _mse_scaled_input(model, batch)

    calls: list = []
    _train(switching, sam=False, spy=calls, steps=5, seq_loss=_mse)
    assert len(calls) == 3  # steps 2 and 3 stacked, step 4's attempt refused, then general


def test_vmap_over_seeds_equals_torch_func_vmap():
    g = torch.Generator().manual_seed(1)
    a, b, c = (torch.randn(S, 4, generator=g) for _ in range(3))

    def fn(x, pair):
        y, z = pair["y"], pair["z"]
        return (x * y).sum(), {"m": z.max(), "c": torch.tensor(2.0), "v": x + z}

    ours = _vmap_over_seeds(fn, S, a, {"y": b, "z": c})
    ref = torch.func.vmap(fn, randomness="error")(a, {"y": b, "z": c})
    torch.testing.assert_close(ours, ref)
    with pytest.raises(RuntimeError, match="randomness"):
        _vmap_over_seeds(lambda x: x + torch.rand(()), S, a)
