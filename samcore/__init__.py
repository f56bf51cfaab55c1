"""samcore: sharpness-aware minimization for any PyTorch loop, and the pieces every domain of
this suite shares. Needs only torch and numpy; imports nothing from ``domains`` or ``runners``.

Optimizer and step (README "Using samcore in your own loop"):
- ``SAM``: wraps a base optimizer class; ``first_step``/``second_step``, ``step(closure)``
  (davda54/sam's contract) and ``two_pass_step(closure)``.
- ``train_step`` / ``StepResult``: one base or SAM step with batch-norm statistics from the
  clean pass, the same dropout masks in both passes, micro-batches, m-sharpness, GradScaler
  and DDP; ``frozen_bn_stats`` and ``split_batch`` are its parts.
- ``capture_rng`` / ``replay_rng``: the random-state replay that gives both passes one mask.
- ``build_optimizer`` (SGD/Adam/AdamW, optionally inside SAM), ``BASE_OPTIMIZERS`` (the
  name -> torch optimizer class table it uses), ``build_scheduler`` and ``LRSchedule``.
Seeding: ``seed_everything``, ``make_generator``, ``stream_seed``.
Width scaling: ``scale_width``, ``parse_width(s)``, ``format_width``, ``count_params``,
``WidthError``.
Hugging Face: ``samcore.hf.SAMTrainer`` (imported on its own; needs ``transformers``).
"""

from samcore.optim import BASE_OPTIMIZERS, LRSchedule, build_optimizer, build_scheduler
from samcore.rng import capture_rng, replay_rng
from samcore.sam import SAM
from samcore.seeding import make_generator, seed_everything, stream_seed
from samcore.step import StepResult, frozen_bn_stats, split_batch, train_step
from samcore.width import (
    WidthError,
    count_params,
    format_width,
    parse_width,
    parse_widths,
    scale_width,
)

__all__ = [
    "SAM",
    "BASE_OPTIMIZERS",
    "LRSchedule",
    "build_optimizer",
    "build_scheduler",
    "capture_rng",
    "replay_rng",
    "make_generator",
    "seed_everything",
    "stream_seed",
    "StepResult",
    "frozen_bn_stats",
    "split_batch",
    "train_step",
    "WidthError",
    "count_params",
    "format_width",
    "parse_width",
    "parse_widths",
    "scale_width",
]
