"""The teacher-student regression workload (paper Fig. 1a)."""

from __future__ import annotations

import pytest
import torch

from domains import create_workload
from samcore import LRSchedule, build_optimizer, build_scheduler, train_step

pytestmark = pytest.mark.synthetic


def _setup(preset="smoke", **kw):
    w = create_workload("synthetic-regression", preset, **kw)
    w.setup_data(None, torch.device("cpu"))
    return w


def test_data_is_fixed_by_data_seed_and_splits_differ():
    a, b = _setup(), _setup()
    for split in ("train", "val", "test"):
        assert torch.equal(a.data[split][0], b.data[split][0])
    c = _setup(data_seed=1)
    assert not torch.equal(a.data["train"][0], c.data["train"][0])
    assert a.data["train"][0].shape == (512, 100) and a.data["val"][0].shape == (256, 100)
    assert not torch.equal(a.data["val"][0][:10], a.data["test"][0][:10])


def test_paper_sizes():
    w = create_workload("synthetic-regression", "paper")
    assert (w.config.num_train, w.config.num_test, w.config.num_epochs) == (20_400, 5_100, 100)
    assert w.steps_per_epoch() == 160


def test_noise_floor_is_the_label_noise_variance():
    w = _setup(num_test=20_000)
    x, y = w.data["test"]
    # Predicting the noiseless teacher would give MSE ~ noise_std^2 = 1: check the noise level
    # by the variance of y around any fixed predictor being at least 1 (within sampling error).
    assert y.var().item() > 1.0


def _one_epoch_final_loss(preset: str) -> float:
    w = _setup(preset, num_epochs=1)
    torch.manual_seed(0)
    model = w.build_model(10.0)  # h = 1000: initial sharpness ~112 > 2/lr = 20
    opt = build_optimizer(model, "sgd", lr=w.config.learning_rate)
    sched = build_scheduler(
        opt, LRSchedule("constant", w.steps_per_epoch(), warmup_steps=w.config.warmup_steps)
    )
    for batch in w.train_batches(0, torch.Generator().manual_seed(0)):
        loss = train_step(model, opt, w.loss, batch).loss
        sched.step()
    return loss.item()


def test_literal_recipe_diverges_and_the_warmup_variant_does_not():
    assert not torch.isfinite(torch.tensor(_one_epoch_final_loss("paper-literal")))
    assert _one_epoch_final_loss("paper") < 3.0


def test_train_eval_size_measures_the_first_examples_and_keeps_old_run_ids():
    from runners.engine.config import RunConfig

    w = _setup(train_eval_size=64)
    model = w.build_model(1.0)
    x, y = w.data["train"]
    with torch.no_grad():
        first = ((model(x[:64]) - y[:64]) ** 2).mean().item()
        whole = ((model(x) - y) ** 2).mean().item()
    out = w.evaluate(model)
    assert out["train/mse"] == pytest.approx(first, rel=1e-6) and first != pytest.approx(whole)
    assert _setup().evaluate(model)["train/mse"] == pytest.approx(whole, rel=1e-6)
    assert w.evaluate(model)["val/mse"] == _setup().evaluate(model)["val/mse"]  # val untouched
    with pytest.raises(ValueError, match="train_eval_size"):
        _setup(train_eval_size=-1)

    # the field at its default (0 = all) is left out of the run id: runs stored before it exist
    def run_id(**kw):
        import dataclasses

        cfg = dataclasses.asdict(_setup(**kw).config)
        return RunConfig(
            "synthetic-regression", "smoke", 1.0, "sgd", "sgd", workload_config=cfg
        ).run_id

    legacy = dataclasses_without(_setup().config, "train_eval_size")
    assert (
        run_id()
        == RunConfig(
            "synthetic-regression", "smoke", 1.0, "sgd", "sgd", workload_config=legacy
        ).run_id
    )
    assert run_id(train_eval_size=64) != run_id()


def dataclasses_without(config, name):
    import dataclasses

    d = dataclasses.asdict(config)
    del d[name]
    return d
