"""Classic-control PPO with a width-scaled MLP policy: the CPU-sized RL workloads (issue 8).

Task: CartPole-v1 (``cartpole-ppo``, the rl domain's default; max return 500, random ~22) and
Acrobot-v1 (``acrobot-ppo``; returns -500..0, random ~-500, solved ~-100) from gymnasium.
Model: SB3's ActorCriticPolicy with separate policy and value MLPs, two tanh hidden layers of
h = 64 * width units each (SB3's MlpPolicy default at 1x), orthogonal init (SB3's ortho_init);
width grid {0.25, 0.5, 1, 2, 4} (h 16..256). CartPole parameters (2h^2 + 15h + 3):
755 / 2,531 / 9,155 / 34,691 / 134,915. Training: SB3's PPO or SAM-PPO (domains/rl/sam_ppo.py)
with the rl-baselines3-zoo hyper-parameters: CartPole n_envs 8, n_steps 32, batch 256, 20
epochs, gamma 0.98, GAE 0.8, lr 1e-3 and clip 0.2 both linearly annealed, ent 0, 1e5 steps;
Acrobot n_envs 16, n_steps 256, batch 64, 4 epochs, gamma 0.99, GAE 0.94, lr 3e-4, 1e6 steps
(the zoo also normalises observations with VecNormalize; not here). Measured (CPU, 1 thread,
seed 0, 1x): 20k CartPole steps of base PPO train in ~5 s (~4,300 steps/s) to val/test
returns 392 / 385. Metric: mean undiscounted return of the greedy policy over 10 val and
10 test episodes (separate env seeds, see common.py). No reference numbers in the paper.

    python runners/run.py --domain rl --width 0.25x,1x,4x --optimizer both --preset quick
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from torch import nn

from domains.registry import register
from domains.rl.common import PPOConfig, fit_ppo, require_rl_extra
from domains.workload import FitRequest, Target, Workload, build_config
from samcore.width import scale_width


@dataclass(frozen=True)
class ClassicConfig(PPOConfig):
    """PPOConfig's defaults are the zoo's CartPole-v1 recipe."""


@functools.lru_cache
def _space_sizes(env_id: str) -> tuple[int, int]:
    """(observation size, number of discrete actions) of a gymnasium env."""
    require_rl_extra()
    import gymnasium as gym

    env = gym.make(env_id)
    obs, act = env.observation_space.shape, env.action_space
    env.close()
    if len(obs) != 1 or not hasattr(act, "n"):
        raise ValueError(f"{env_id}: MLP workloads need a flat observation and discrete actions")
    return int(obs[0]), int(act.n)


class _MlpActorCritic(nn.Module):
    """The layers of SB3's MlpPolicy with net_arch dict(pi=[h, h], vf=[h, h]), for counting:
    the same parameter count as the policy SB3 trains (tests/domains/rl/test_classic.py)."""

    def __init__(self, obs_dim: int, n_actions: int, h: int) -> None:
        super().__init__()
        self.policy_net = nn.Sequential(
            nn.Linear(obs_dim, h), nn.Tanh(), nn.Linear(h, h), nn.Tanh()
        )
        self.value_net_body = nn.Sequential(
            nn.Linear(obs_dim, h), nn.Tanh(), nn.Linear(h, h), nn.Tanh()
        )
        self.action_net = nn.Linear(h, n_actions)  # (B, h) -> (B, A) logits
        self.value_net = nn.Linear(h, 1)  # (B, h) -> (B, 1)


class ClassicPPO(Workload):
    target = Target("return", "max", unit="return")
    widths = (0.25, 0.5, 1.0, 2.0, 4.0)
    owns_loop = True

    def __init__(self, config: ClassicConfig) -> None:
        super().__init__(config)
        self.config: ClassicConfig = config

    def hidden(self, width: float) -> int:
        return scale_width(self.config.base_width, width)

    def build_model(self, width: float) -> nn.Module:
        return _MlpActorCritic(*_space_sizes(self.config.env_id), self.hidden(width))

    def setup_data(self, data_root: Any, device: Any) -> None:
        """No data: the environments are built per run. Checks the rl extra is installed."""
        require_rl_extra()

    def _make_env(self, n_envs: int, seed: int, training: bool) -> Any:
        from stable_baselines3.common.env_util import make_vec_env
        from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

        subproc = self.config.subproc_envs and training
        return make_vec_env(
            self.config.env_id,
            n_envs=n_envs,
            seed=seed,
            vec_env_cls=SubprocVecEnv if subproc else DummyVecEnv,
        )

    def policy_kwargs(self, width: float) -> dict[str, Any]:
        """SB3 MlpPolicy arguments: separate pi and vf MLPs of h tanh units, two layers each."""
        h = self.hidden(width)
        return dict(net_arch=dict(pi=[h, h], vf=[h, h]), activation_fn=nn.Tanh)

    def fit(self, request: FitRequest) -> dict[str, float]:
        return fit_ppo(self.config, request, self._make_env, self.policy_kwargs(request.width))


# ------------------------------------------------------------------------ presets, registry
CARTPOLE: dict[str, dict[str, Any]] = {
    "paper": {},  # the zoo recipe, 1e5 steps
    "quick": {"total_timesteps": 30_000},
    "smoke": {"total_timesteps": 512, "num_epochs": 2, "eval_episodes": 2},
}
ACROBOT_RECIPE: dict[str, Any] = {
    "env_id": "Acrobot-v1",
    "num_envs": 16,
    "n_steps": 256,
    "num_epochs": 4,
    "batch_size": 64,
    "gamma": 0.99,
    "gae_lambda": 0.94,
    "learning_rate": 3e-4,
    "lr_schedule": "constant",
    "clip_range_schedule": "constant",
    "total_timesteps": 1_000_000,
}
ACROBOT: dict[str, dict[str, Any]] = {
    "paper": ACROBOT_RECIPE,
    "quick": {**ACROBOT_RECIPE, "total_timesteps": 100_000},
    "smoke": {
        **ACROBOT_RECIPE,
        "num_envs": 2,
        "n_steps": 128,
        "total_timesteps": 512,
        "num_epochs": 1,
        "eval_episodes": 2,
    },
}


@register("cartpole-ppo", domain="rl", default=True)
def cartpole_ppo(preset: str = "quick", **overrides: Any) -> Workload:
    """CartPole-v1, PPO, MLP policy 64*width hidden units (zoo hyper-parameters)."""
    return ClassicPPO(build_config(ClassicConfig, CARTPOLE, preset, **overrides))


@register("acrobot-ppo", domain="rl")
def acrobot_ppo(preset: str = "quick", **overrides: Any) -> Workload:
    """Acrobot-v1, PPO, MLP policy 64*width hidden units (zoo hyper-parameters)."""
    return ClassicPPO(build_config(ClassicConfig, ACROBOT, preset, **overrides))
