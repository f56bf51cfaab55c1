"""What the PPO workloads share: the PPO config fields and ``fit_ppo``, the owned training loop.

``fit_ppo`` trains stable-baselines3's PPO (base runs) or ``SAMPPO`` (SAM runs, same code path
otherwise), logs one row per rollout (training return over the last 100 episodes, env steps/s,
SB3's loss terms of the previous update), and evaluates with SB3's ``evaluate_policy`` on two
separately seeded evaluation vec envs: ``val`` episodes (env seeds seed+10_000...) select the
checkpoint, ``test`` episodes (seeds seed+20_000...) are reported. With ``eval_freq`` > 0 the
policy is also evaluated on the val episodes during training, and the best such policy (the
paper reports "best score") is kept in memory: ``val/return`` and ``test/return`` are then the
best checkpoint's, the final policy's are ``final_val/return`` and ``final_test/return``.
The runner stores them as the two protocols: ``best/*`` (the best val checkpoint; the final
policy when ``eval_freq`` is 0) and ``final/*`` = the last evaluation, of the policy after
``total_timesteps`` (``final/step``; PPO has no epochs, so ``final/epoch`` is None).
The ``step`` of every logged row is the number of environment steps (agent steps) so far;
``train/episode_length`` is Monitor's, in the wrapped env's own steps (emulator frames for Atari).

gymnasium, stable_baselines3 and ale_py are imported only inside functions.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from domains.workload import FitRequest, TrainConfig

__all__ = ["PPOConfig", "require_rl_extra", "fit_ppo"]

RL_EXTRA_HINT = "the rl domain needs its extra: pip install -e .[rl]"
VAL_SEED_OFFSET = 10_000  # evaluation env seeds: run seed + offset + env index
TEST_SEED_OFFSET = 20_000


def require_rl_extra() -> None:
    """Import the RL libraries now, or fail with the install command."""
    try:
        import gymnasium  # noqa: F401
        import stable_baselines3  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"{RL_EXTRA_HINT} ({exc})") from exc


@dataclass(frozen=True)
class PPOConfig(TrainConfig):
    """PPO recipe fields. Of TrainConfig, PPO uses optimizer (Adam), learning_rate,
    lr_schedule (constant | linear: SB3's linear anneal to 0), betas, adam_eps, weight_decay,
    batch_size (the minibatch size) and num_epochs (PPO epochs over each rollout); momentum,
    lr_milestones, lr_gamma, warmup_steps and eval_every are unused."""

    env_id: str = "CartPole-v1"
    """gymnasium environment id"""
    num_envs: int = 8
    """parallel environments collecting each rollout"""
    subproc_envs: bool = False
    """one subprocess per environment (SubprocVecEnv) instead of stepping them in-process"""
    n_steps: int = 32
    """environment steps per environment per rollout (rollout = num_envs * n_steps)"""
    total_timesteps: int = 100_000
    """environment (agent) steps of training, summed over the environments"""
    gamma: float = 0.98
    """discount factor"""
    gae_lambda: float = 0.8
    """GAE lambda"""
    clip_range: float = 0.2
    """PPO ratio clip epsilon"""
    clip_range_schedule: str = "linear"
    """constant | linear (annealed to 0 like the learning rate)"""
    ent_coef: float = 0.0
    """entropy bonus coefficient"""
    vf_coef: float = 0.5
    """value loss coefficient (SB3's value loss is the MSE; CleanRL's is half the MSE)"""
    clip_range_vf: float | None = None
    """value clipping: the new value kept within this distance of the rollout's (SB3's
    clip_range_vf, constant); None = no value clipping"""
    max_grad_norm: float = 0.5
    """global gradient-norm clip (SB3 clips the gradient that the Adam step uses)"""
    normalize_advantage: bool = True
    """normalise advantages per minibatch"""
    eval_episodes: int = 10
    """evaluation episodes for val and for test each (separate env seeds)"""
    eval_envs: int = 2
    """parallel environments of each evaluation vec env"""
    eval_deterministic: bool = True
    """greedy actions in evaluation (False: sample from the policy)"""
    eval_freq: int = 0
    """evaluate on the val episodes every this many env steps and keep the best policy (0: off)"""
    base_width: int = 64
    """hidden units (MLP) or first-conv channels / 2 (Nature-CNN) at width 1x"""
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    lr_schedule: str = "linear"
    adam_eps: float = 1e-5
    """Adam epsilon (SB3's PPO default, CleanRL's)"""
    batch_size: int = 256
    """PPO minibatch size"""
    num_epochs: int = 20
    """PPO epochs over each rollout"""
    rho: float = 0.01
    """default SAM radius. Measured (cartpole-ppo quick, seed 0): rho 0.05 lowered test return
    at every width (1x 500 -> 361, 4x 500 -> 169); rho 0.005 and 0.01 reached 500 at 1x and 4x"""
    rho_grid: tuple[float, ...] = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1)
    """our grid for the classic-control workloads (not in the paper, which has only Atari:
    AtariConfig holds its grid); rho selected on val/return"""


def _schedule(kind: str, value: float) -> float | Callable[[float], float]:
    if kind == "constant":
        return value
    if kind == "linear":  # SB3 passes progress_remaining, 1 -> 0 over training
        return lambda progress_remaining: progress_remaining * value
    raise ValueError(f"schedule must be constant or linear, got {kind!r}")


def fit_ppo(
    config: PPOConfig,
    request: FitRequest,
    make_env: Callable[[int, int, bool], Any],
    policy_kwargs: dict[str, Any],
    policy: str = "MlpPolicy",
) -> dict[str, float]:
    """Train one PPO run. ``make_env(n_envs, seed, training)`` builds a seeded vec env."""
    require_rl_extra()
    import torch

    c = config
    algo_kwargs: dict[str, Any] = dict(
        learning_rate=_schedule(c.lr_schedule, c.learning_rate),
        n_steps=c.n_steps,
        batch_size=c.batch_size,
        n_epochs=c.num_epochs,
        gamma=c.gamma,
        gae_lambda=c.gae_lambda,
        clip_range=_schedule(c.clip_range_schedule, c.clip_range),
        normalize_advantage=c.normalize_advantage,
        ent_coef=c.ent_coef,
        vf_coef=c.vf_coef,
        clip_range_vf=c.clip_range_vf,
        max_grad_norm=c.max_grad_norm,
        policy_kwargs=dict(
            policy_kwargs,
            optimizer_class=torch.optim.Adam,
            optimizer_kwargs=dict(eps=c.adam_eps, betas=c.betas, weight_decay=c.weight_decay),
        ),
        seed=request.seed,
        device=request.device,
        verbose=0,
    )
    if request.base_optimizer != "adam":
        raise ValueError(f"PPO workloads use Adam, got base optimizer {request.base_optimizer!r}")
    envs = {  # env i of a vec env gets seed + i (SB3); val and test episodes are disjoint
        "train": make_env(c.num_envs, request.seed, True),
        "val": make_env(c.eval_envs, request.seed + VAL_SEED_OFFSET, False),
        "test": make_env(c.eval_envs, request.seed + TEST_SEED_OFFSET, False),
    }
    try:
        return _fit(c, request, envs, policy, algo_kwargs)
    finally:
        for env in envs.values():  # subprocess envs must not outlive the run
            env.close()


def _fit(
    c: PPOConfig, request: FitRequest, envs: dict[str, Any], policy: str, algo_kwargs: dict
) -> dict[str, float]:
    import numpy as np
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.logger import Logger

    if request.sam:
        from domains.rl.sam_ppo import SAMPPO

        model = SAMPPO(
            policy, envs["train"], rho=request.rho, adaptive=request.adaptive, **algo_kwargs
        )
    else:
        model = PPO(policy, envs["train"], **algo_kwargs)

    def evaluate(split: str) -> float:
        offset = VAL_SEED_OFFSET if split == "val" else TEST_SEED_OFFSET
        envs[split].seed(request.seed + offset)  # the same episodes every time
        mean, _ = evaluate_policy(
            model, envs[split], n_eval_episodes=c.eval_episodes, deterministic=c.eval_deterministic
        )
        return float(mean)

    best: dict[str, Any] = {"val": -math.inf, "state": None, "step": 0}

    class LogCallback(BaseCallback):
        """One row per rollout; every ``eval_freq`` env steps, a val evaluation."""

        def _on_training_start(self) -> None:
            self.t0, self.last_eval = time.perf_counter(), 0

        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            m = self.model
            elapsed = time.perf_counter() - self.t0
            row = {"train/steps_per_s": m.num_timesteps / max(elapsed, 1e-9)}
            row["train/wall_time_s"] = elapsed
            if m.ep_info_buffer:  # Monitor's episodes: raw (unclipped, all-lives) returns
                row["train/return"] = float(np.mean([e["r"] for e in m.ep_info_buffer]))
                row["train/episode_length"] = float(np.mean([e["l"] for e in m.ep_info_buffer]))
            for k, v in m.logger.name_to_value.items():  # the previous update's loss terms
                if k.startswith("train/") and np.isfinite(v):
                    row[k] = float(v)
            if c.eval_freq and m.num_timesteps - self.last_eval >= c.eval_freq:
                self.last_eval = m.num_timesteps
                row["val/return"] = evaluate("val")
                if row["val/return"] > best["val"]:
                    best.update(val=row["val/return"], step=m.num_timesteps)
                    best["state"] = copy.deepcopy(m.policy.state_dict())
            request.log(m.num_timesteps, row)

    # SB3's default logger makes an empty /tmp/SB3-<date> folder per learn() even at verbose=0;
    # one that writes nowhere keeps the loss terms LogCallback reads and leaves no litter.
    model.set_logger(Logger(folder=None, output_formats=[]))
    t0 = time.perf_counter()
    model.learn(total_timesteps=c.total_timesteps, callback=LogCallback())
    train_time = time.perf_counter() - t0
    out = {
        "steps_per_s": model.num_timesteps / train_time,
        "timesteps": float(model.num_timesteps),
        "train_time_s": train_time,
        "final_step": float(model.num_timesteps),
        "final_val/return": evaluate("val"),
        "final_test/return": evaluate("test"),
    }
    if best["state"] is not None and best["val"] > out["final_val/return"]:
        model.policy.load_state_dict(best["state"])  # the best val checkpoint, on test episodes
        out["val/return"], out["best_step"] = best["val"], float(best["step"])
        out["test/return"] = evaluate("test")
    else:
        out["val/return"], out["best_step"] = out["final_val/return"], out["timesteps"]
        out["test/return"] = out["final_test/return"]
    return out
