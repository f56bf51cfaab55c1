"""SAM-PPO (domains/rl/sam_ppo.py): rho = 0 is plain PPO bit for bit; rho > 0 is not."""

from __future__ import annotations

import pytest
import torch

from samcore import SAM

pytestmark = pytest.mark.rl

KW = dict(n_steps=32, batch_size=16, n_epochs=2, learning_rate=lambda p: 1e-3 * (1 + p) / 2, seed=7)
# SB3 passes progress_remaining (1 -> 0): the one update here runs at lr 5e-4


def _params(model):
    return [p.detach().clone() for p in model.policy.parameters()]


def _train(cls, **extra):
    from stable_baselines3.common.env_util import make_vec_env

    env = make_vec_env("CartPole-v1", n_envs=2, seed=7)
    model = cls("MlpPolicy", env, device="cpu", **KW, **extra)
    before = _params(model)
    model.learn(total_timesteps=64)  # one rollout (2 envs x 32 steps), one train(): 8 updates
    return model, before, _params(model)


def test_rho_zero_reproduces_ppo_exactly():
    from stable_baselines3 import PPO

    from domains.rl.sam_ppo import SAMPPO

    base, b0, b1 = _train(PPO)
    sam, s0, s1 = _train(SAMPPO, rho=0.0)
    assert isinstance(sam.policy.optimizer, SAM)
    assert all(torch.equal(a, b) for a, b in zip(b0, s0))  # same initial policy
    assert any(not torch.equal(a, b) for a, b in zip(b0, b1))  # PPO moved the parameters
    assert all(torch.equal(a, b) for a, b in zip(b1, s1))  # ... and SAM-PPO exactly alike
    # the LR schedule reached the base (Adam) optimizer through the shared param_groups
    lr = sam.policy.optimizer.base_optimizer.param_groups[0]["lr"]
    assert lr == base.policy.optimizer.param_groups[0]["lr"] == pytest.approx(5e-4)
    assert sam.policy.optimizer.base_optimizer.defaults["eps"] == 1e-5  # SB3's Adam eps kept


def test_positive_rho_changes_the_update_and_logs_sam_terms():
    from stable_baselines3 import PPO

    from domains.rl.sam_ppo import SAMPPO

    _, _, b1 = _train(PPO)
    sam, _, s1 = _train(SAMPPO, rho=0.05)
    assert any(not torch.equal(a, b) for a, b in zip(b1, s1))
    assert all(torch.isfinite(p).all() for p in s1)
    logged = sam.logger.name_to_value
    assert logged["train/sam_grad_norm"] > 0 and "train/sam_loss" in logged
    assert not sam.policy.optimizer._climbed  # every ascent was undone


def test_sam_ppo_saves_and_loads_with_sb3(tmp_path):
    from domains.rl.sam_ppo import SAMPPO

    sam, _, s1 = _train(SAMPPO, rho=0.05)
    sam.save(tmp_path / "model.zip")
    loaded = SAMPPO.load(tmp_path / "model.zip", device="cpu")
    assert isinstance(loaded.policy.optimizer, SAM) and loaded.rho == 0.05
    assert all(torch.equal(a, b) for a, b in zip(s1, _params(loaded)))
    state = loaded.policy.optimizer.base_optimizer.state
    assert len(state) == len(s1)  # Adam's moments came back with the policy
