"""atari-ppo: the paper's parameter counts, offline ALE envs with SB3's wrappers, a smoke fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from domains import FitRequest, create_workload
from samcore import count_params

pytestmark = pytest.mark.rl
pytest.importorskip("ale_py", reason="pip install -e .[rl]")

PAPER_COUNTS = [424_533, 1_686_693, 3_786_485, 6_723_909]  # PAPERS.md, Breakout (4 actions)


def _formula(k: int, n_actions: int = 4) -> int:
    """Nature-CNN scaled by k/2: convs 16k (8x8, 4 frames), 32k (4x4), 32k (3x3), dense 256k."""
    c1, c2, d = 16 * k, 32 * k, 256 * k
    convs = (4 * 64 + 1) * c1 + (c1 * 16 + 1) * c2 + (c2 * 9 + 1) * c2
    dense = (c2 * 7 * 7 + 1) * d
    return convs + dense + (d + 1) * n_actions + (d + 1)  # + actor + critic


def test_parameter_counts_equal_the_paper():
    workload = create_workload("atari-ppo", "paper")
    assert workload.widths == (0.5, 1.0, 1.5, 2.0)
    with torch.device("meta"):
        counts = [count_params(workload.build_model(w)) for w in workload.widths]
    assert counts == PAPER_COUNTS == [_formula(k) for k in (1, 2, 3, 4)]


def test_sb3_policy_has_the_counted_layers_and_envs_step_offline():
    from stable_baselines3 import PPO

    workload = create_workload("atari-ppo", "smoke", subproc_envs=True)
    env = workload.make_env(2, seed=0, training=True)  # SubprocVecEnv: workers register ALE
    obs = env.reset()
    assert obs.shape == (2, 84, 84, 4) and obs.dtype == np.uint8
    for _ in range(20):
        obs, reward, done, info = env.step(np.array([env.action_space.sample() for _ in range(2)]))
    assert set(np.unique(reward)) <= {-1.0, 0.0, 1.0}  # training rewards are clipped
    model = PPO("CnnPolicy", env, policy_kwargs=workload.policy_kwargs(0.5), device="cpu")
    assert count_params(model.policy) == PAPER_COUNTS[0]
    assert model.policy.features_extractor is model.policy.pi_features_extractor  # shared trunk
    env.close()
    eval_env = workload.make_env(1, seed=10_000, training=False)
    assert eval_env.reset().shape == (1, 84, 84, 4)
    eval_env.close()


def test_smoke_fit_with_sam():
    rows: list = []
    workload = create_workload("atari-ppo", "smoke")
    out = workload.fit(
        FitRequest(
            width=0.5,
            seed=0,
            sam=True,
            base_optimizer="adam",
            rho=0.05,
            adaptive=False,
            device=torch.device("cpu"),
            log=lambda step, metrics: rows.append((step, metrics)),
            checkpoint_dir=Path("unused"),
        )
    )
    assert np.isfinite(out["val/return"]) and np.isfinite(out["test/return"])
    assert [s for s, _ in rows] == [128, 256]  # one row per rollout of 2 envs x 64 steps
    assert rows[-1][1]["train/steps_per_s"] > 0 and "train/sam_grad_norm" in rows[-1][1]
