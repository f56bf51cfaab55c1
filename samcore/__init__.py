"""samcore: SAM and the pieces every domain shares. Imports nothing from domains or runners."""

from samcore.optim import BASE_OPTIMIZERS, LRSchedule, build_optimizer, build_scheduler
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
