"""SAM inside stable-baselines3's PPO: one SAM step per PPO minibatch update.

Each minibatch update of ``SAMPPO.train`` (issue 8):
    g      = grad L_ppo(w)                  (clipped surrogate + vf_coef*value - ent_coef*entropy)
    e      = rho * g / (||g|| + eps)        (samcore.SAM.first_step; global norm over the policy)
    g_sam  = grad L_ppo(w + e)              (same minibatch, normalised advantages, old log-probs)
    w     <- Adam(w, clip(g_sam, max_grad_norm))   (samcore.SAM.second_step restores w first)
The ascent uses the raw gradient: global-norm clipping only rescales g, which e = rho*g/||g||
ignores. Everything else (rollouts, GAE, LR schedule on the optimizer's ``param_groups``,
callbacks, logging, saving) is SB3's own. With rho = 0, e = 0 and the update is plain PPO's,
bit for bit (tests/domains/rl/test_sam_ppo.py).

This module imports stable_baselines3 at the top: import it only inside functions.

    model = SAMPPO("MlpPolicy", "CartPole-v1", rho=0.05, seed=0); model.learn(10_000)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.utils import explained_variance
from torch.nn import functional as F

from samcore import SAM

__all__ = ["SAMPPO"]


def _bind_kwargs(cls: type[th.optim.Optimizer], kwargs: dict[str, Any]) -> type:
    """``cls`` with ``kwargs`` bound: SAM's own ``eps`` keyword would shadow Adam's eps=1e-5."""

    class Bound(cls):  # type: ignore[misc, valid-type]
        def __init__(self, params: Any, **kw: Any) -> None:
            super().__init__(params, **{**kwargs, **kw})

    Bound.__name__ = Bound.__qualname__ = cls.__name__
    return Bound


class SAMPPO(PPO):
    """PPO whose policy optimizer is ``samcore.SAM`` around the policy's own optimizer class
    (Adam, eps 1e-5 by SB3's default). Extra arguments: ``rho`` and ``adaptive``."""

    def __init__(self, *args: Any, rho: float = 0.05, adaptive: bool = False, **kwargs: Any):
        self.rho, self.adaptive = rho, adaptive
        super().__init__(*args, **kwargs)

    def _setup_model(self) -> None:
        super()._setup_model()
        policy = self.policy
        lr = policy.optimizer.param_groups[0]["lr"]
        # SAM shares param_groups with the base optimizer, so _update_learning_rate reaches it,
        # and its state_dict is the base optimizer's (SB3's saving works unchanged).
        policy.optimizer = SAM(
            policy.parameters(),
            _bind_kwargs(policy.optimizer_class, policy.optimizer_kwargs),
            rho=self.rho,
            adaptive=self.adaptive,
            lr=lr,
        )

    def _ppo_loss(self, rollout_data: Any, clip_range: float, clip_range_vf: float | None):
        """SB3's PPO loss for one minibatch (ppo.py, SB3 2.9), unchanged; also its log terms."""
        actions = rollout_data.actions
        if isinstance(self.action_space, spaces.Discrete):
            # Convert discrete action from float to long
            actions = rollout_data.actions.long().flatten()

        values, log_prob, entropy = self.policy.evaluate_actions(rollout_data.observations, actions)
        values = values.flatten()
        # Normalize advantage
        advantages = rollout_data.advantages
        # Normalization does not make sense if mini batchsize == 1, see GH issue #325
        if self.normalize_advantage and len(advantages) > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

        # ratio between old and new policy, should be one at the first iteration
        ratio = th.exp(log_prob - rollout_data.old_log_prob)

        # clipped surrogate loss
        policy_loss_1 = advantages * ratio
        policy_loss_2 = advantages * th.clamp(ratio, 1 - clip_range, 1 + clip_range)
        policy_loss = -th.min(policy_loss_1, policy_loss_2).mean()

        if clip_range_vf is None:
            values_pred = values
        else:
            values_pred = rollout_data.old_values + th.clamp(
                values - rollout_data.old_values, -clip_range_vf, clip_range_vf
            )
        # Value loss using the TD(gae_lambda) target
        value_loss = F.mse_loss(rollout_data.returns, values_pred)
        # Entropy loss favor exploration
        entropy_loss = -th.mean(-log_prob) if entropy is None else -th.mean(entropy)

        loss = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss
        return loss, policy_loss, value_loss, entropy_loss, ratio, log_prob

    def train(self) -> None:
        """SB3's PPO.train (2.9) with the optimisation step replaced by a SAM step."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        clip_range = self.clip_range(self._current_progress_remaining)  # type: ignore[operator]
        clip_range_vf = None
        if self.clip_range_vf is not None:
            clip_range_vf = self.clip_range_vf(self._current_progress_remaining)  # type: ignore[operator]

        entropy_losses, pg_losses, value_losses, clip_fractions = [], [], [], []
        grad_norms, sam_losses = [], []
        optimizer: SAM = self.policy.optimizer  # type: ignore[assignment]

        continue_training = True
        for epoch in range(self.n_epochs):
            approx_kl_divs = []
            for rollout_data in self.rollout_buffer.get(self.batch_size):
                loss, policy_loss, value_loss, entropy_loss, ratio, log_prob = self._ppo_loss(
                    rollout_data, clip_range, clip_range_vf
                )
                pg_losses.append(policy_loss.item())
                clip_fractions.append(th.mean((th.abs(ratio - 1) > clip_range).float()).item())
                value_losses.append(value_loss.item())
                entropy_losses.append(entropy_loss.item())

                # approximate reverse KL for early stopping (SB3 issue #417), at w
                with th.no_grad():
                    log_ratio = log_prob - rollout_data.old_log_prob
                    approx_kl_div = th.mean((th.exp(log_ratio) - 1) - log_ratio).cpu().numpy()
                    approx_kl_divs.append(approx_kl_div)

                if self.target_kl is not None and approx_kl_div > 1.5 * self.target_kl:
                    continue_training = False
                    if self.verbose >= 1:
                        print(
                            f"Early stopping at step {epoch} due to reaching max kl: {approx_kl_div:.2f}"
                        )
                    break

                # SAM step: ascend to w + e with the raw gradient, take the gradient there
                optimizer.zero_grad()
                loss.backward()
                grad_norms.append(optimizer.first_step(zero_grad=True).item())
                sam_loss = self._ppo_loss(rollout_data, clip_range, clip_range_vf)[0]
                sam_loss.backward()
                sam_losses.append(sam_loss.item())
                # Clip grad norm (SB3's), then back to w and the base (Adam) step
                th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
                optimizer.second_step()

            self._n_updates += 1
            if not continue_training:
                break

        explained_var = explained_variance(
            self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten()
        )

        # Logs (SB3's, plus SAM's ascent gradient norm and the loss at w + e)
        self.logger.record("train/entropy_loss", np.mean(entropy_losses))
        self.logger.record("train/policy_gradient_loss", np.mean(pg_losses))
        self.logger.record("train/value_loss", np.mean(value_losses))
        self.logger.record("train/approx_kl", np.mean(approx_kl_divs))
        self.logger.record("train/clip_fraction", np.mean(clip_fractions))
        self.logger.record("train/loss", loss.item())
        self.logger.record("train/explained_variance", explained_var)
        self.logger.record("train/sam_grad_norm", np.mean(grad_norms) if grad_norms else np.nan)
        self.logger.record("train/sam_loss", np.mean(sam_losses) if sam_losses else np.nan)
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())

        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/clip_range", clip_range)
        if self.clip_range_vf is not None:
            self.logger.record("train/clip_range_vf", clip_range_vf)
