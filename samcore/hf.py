"""Hugging Face ``Trainer`` with SAM: ``SAMTrainer(model, args, train_dataset=..., rho=0.05)``.

Needs ``transformers`` and ``accelerate`` (the ``hf`` extra); ``import samcore`` does not
import this module.

How it fits Trainer's loop (transformers 4.4x-5.x): Trainer runs ``training_step`` (forward
and backward) for each micro-batch of an optimizer step, then clips and calls
``optimizer.step()``. That first pass is SAM's pass at w. ``SAMTrainer`` records each
micro-batch (and the random state it started from); at ``optimizer.step()`` the SAM optimizer
climbs to w + e, replays every micro-batch through Trainer's own ``training_step`` (same loss
normalisation, autocast and ``accelerator.backward``; batch-norm statistics frozen; the same
dropout masks; DDP gradient sync on the last micro-batch only, as Trainer does) and updates w
with that gradient. So gradient accumulation and mixed precision are Trainer's own:
- bf16/fp32: nothing more to do.
- fp16 (Trainer's GradScaler): the scaler unscales and checks the first pass before calling
  ``step``; the replayed pass is unscaled here with the same scale, and an inf/nan in it skips
  that update (the scale itself is lowered only by first-pass overflows).
- ``max_grad_norm`` clips the gradient at w + e, the one the update uses.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from transformers import Trainer

from samcore.rng import RNGState, capture_rng, replay_rng
from samcore.sam import SAM
from samcore.step import frozen_bn_stats

__all__ = ["SAMTrainer"]


class _TrainerSAM(SAM):
    """SAM whose closure-free ``step()`` (what Trainer calls) runs the trainer's second pass."""

    second_pass: Callable[[], bool]  # replays the step's micro-batches; False on inf/nan

    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> None:  # type: ignore[override]
        if closure is not None:
            raise ValueError("SAMTrainer's optimizer replays the micro-batches itself")
        self.first_step(zero_grad=True)
        if self.second_pass():
            self.second_step()
        else:
            self.unperturb()  # an fp16 overflow at w + e: no update this step


class SAMTrainer(Trainer):
    """``transformers.Trainer`` that optimizes with ``samcore.SAM`` around the optimizer
    Trainer would build (AdamW and its decay groups by default, or ``optimizers=``'s class).

    rho, adaptive: SAM's radius and ASAM. same_dropout_masks: the replayed pass at w + e draws
    the dropout masks of the pass at w (see ``samcore.train_step``).
    """

    def __init__(
        self,
        *args: Any,
        rho: float = 0.05,
        adaptive: bool = False,
        same_dropout_masks: bool = True,
        **kwargs: Any,
    ) -> None:
        self.rho, self.adaptive, self.same_dropout_masks = rho, adaptive, same_dropout_masks
        # The current step's micro-batches: (inputs, num_items_in_batch, random state).
        self._micro_batches: list[tuple[Any, Any, RNGState | None]] = []
        self._replaying = False
        self._model_in_step: nn.Module | None = None
        super().__init__(*args, **kwargs)

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        if self.optimizer is None or not isinstance(self.optimizer, SAM):
            base = super().create_optimizer(model) if self.optimizer is None else self.optimizer
            groups = [dict(g) for g in base.param_groups]  # decay groups and hyperparameters
            # The groups carry every hyperparameter (lr, betas, eps, ...) of the base.
            sam = _TrainerSAM(groups, type(base), rho=self.rho, adaptive=self.adaptive)
            sam.second_pass = self._second_pass
            self.optimizer = sam
        return self.optimizer

    def training_step(
        self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch: Any = None
    ) -> torch.Tensor:
        if not self._replaying:  # the pass at w: remember what to replay at w + e
            device = next(model.parameters()).device
            rng = capture_rng(device) if self.same_dropout_masks else None
            self._micro_batches.append((inputs, num_items_in_batch, rng))
            self._model_in_step = model
        return super().training_step(model, inputs, num_items_in_batch)

    def _second_pass(self) -> bool:
        """Forward-backward of the step's micro-batches at w + e; True if the gradient is
        finite (always, without fp16's GradScaler)."""
        model, batches = self._model_in_step, self._micro_batches
        self._micro_batches = []
        if model is None or not batches:
            raise RuntimeError("SAMTrainer: optimizer.step() without a training_step before it")
        self._replaying = True
        try:
            with frozen_bn_stats(model):
                for i, (inputs, num_items, rng) in enumerate(batches):
                    last = i == len(batches) - 1
                    sync = self.accelerator.no_sync(model) if not last else contextlib.nullcontext()
                    with sync, replay_rng(rng):
                        super().training_step(model, inputs, num_items)
        finally:
            self._replaying = False
        params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        scaler = getattr(self.accelerator, "scaler", None)
        if scaler is not None and scaler.is_enabled():
            found_inf = torch.zeros((), device=params[0].device)
            inv_scale = (1.0 / scaler.get_scale()) * torch.ones((), device=params[0].device)
            torch._amp_foreach_non_finite_check_and_unscale_(
                [p.grad for p in params], found_inf, inv_scale
            )
            if found_inf.item():
                return False
        if self.args.max_grad_norm and self.args.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, self.args.max_grad_norm)
        return True
