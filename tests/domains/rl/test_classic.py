"""cartpole-ppo / acrobot-ppo: parameter counts equal SB3's policy; CartPole learns; CLI."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch

from domains import FitRequest, create_workload, default_workload
from results.store import Store
from samcore import count_params
from tests.conftest import run_cli

pytestmark = pytest.mark.rl


def _request(sam: bool, rows: list, seed: int = 0) -> FitRequest:
    return FitRequest(
        width=1.0,
        seed=seed,
        sam=sam,
        base_optimizer="adam",
        rho=0.05,
        adaptive=False,
        device=torch.device("cpu"),
        log=lambda step, metrics: rows.append((step, metrics)),
        checkpoint_dir=Path("unused"),
    )


@pytest.mark.parametrize("name", ["cartpole-ppo", "acrobot-ppo"])
def test_build_model_counts_equal_the_policy_sb3_trains(name):
    from stable_baselines3 import PPO

    workload = create_workload(name, "smoke")
    for width in workload.widths:
        kwargs = workload.policy_kwargs(width)
        model = PPO("MlpPolicy", workload.config.env_id, policy_kwargs=kwargs, device="cpu")
        with torch.device("meta"):
            assert count_params(workload.build_model(width)) == count_params(model.policy)
    assert default_workload("rl") == "cartpole-ppo"


def test_short_cartpole_run_learns_well_above_random():
    """20k steps of base PPO (zoo recipe, ~5 s): random play scores ~20, this ~390 (seed 0)."""
    rows: list = []
    workload = create_workload("cartpole-ppo", "quick", total_timesteps=20_000)
    out = workload.fit(_request(False, rows))
    returns = [m["train/return"] for _, m in rows if "train/return" in m]
    assert returns[0] < 40 and returns[-1] > 2 * returns[0]
    assert out["val/return"] > 150 and out["test/return"] > 150, out
    assert all(m["train/steps_per_s"] > 0 for _, m in rows)
    assert rows[-1][0] == out["timesteps"] >= 20_000


def test_sam_fit_with_best_checkpoint_tracking(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where SB3's default logger writes
    rows: list = []
    workload = create_workload("acrobot-ppo", "smoke", total_timesteps=1024, eval_freq=512)
    out = workload.fit(_request(True, rows, seed=1))
    assert list(tmp_path.iterdir()) == []  # no SB3-<date> folder per run
    assert any("train/policy_gradient_loss" in m for _, m in rows)  # PPO's loss terms still come
    assert {"val/return", "test/return", "final_val/return", "final_test/return"} <= set(out)
    assert sum("val/return" in m for _, m in rows) == 2  # evaluated at 512 and 1024 steps
    assert out["val/return"] >= out["final_val/return"]
    assert any("train/sam_grad_norm" in m for _, m in rows)


def test_cli_end_to_end_smoke(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # run_cli copies os.environ (and PYTHONPATH)
    res = run_cli(
        ["--domain", "rl", "--preset", "smoke", "--optimizer", "both", "--results", "out"],
        tmp_path,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    store = Store(tmp_path / "out" / "runs.sqlite")
    runs = store.runs(workload="cartpole-ppo", status="done")
    assert {r["optimizer"] for r in runs} == {"adam", "sam"}
    for r in runs:
        assert r["n_params"] == 9_155 and r["summary"]["best/val_return"] is not None
        assert any(m["key"] == "train/steps_per_s" for m in store.metrics(r["id"]))


def test_missing_extra_names_the_install_command(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "stable_baselines3", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install -e \.\[rl\]"):
        create_workload("cartpole-ppo", "smoke").setup_data(None, torch.device("cpu"))


def test_same_seed_same_rows():
    """Two SAM runs with one seed log identical metrics (timings aside) and results."""
    runs = []
    for _ in range(2):
        rows: list = []
        out = create_workload("cartpole-ppo", "smoke").fit(_request(True, rows, seed=3))
        untimed = [
            (s, {k: v for k, v in m.items() if "per_s" not in k and "time" not in k})
            for s, m in rows
        ]
        runs.append((untimed, out["val/return"], out["test/return"]))
    assert runs[0] == runs[1]
