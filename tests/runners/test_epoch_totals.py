"""The epoch's loss totals, read once at its end (``runners.engine.train._loss_totals``; issue
21: the per-step running sum and non-finite check were five tensor ops a step).

The stored ``train/loss_first_pass`` must stay what a running float32 ``loss_sum += loss`` on
the device gave: the sum is added in step order, in float32 (checked on values where any other
order or precision gives another number), and the first non-finite step is the first one."""

from __future__ import annotations

import math

import torch

from runners.engine.train import _loss_totals


def test_mean_is_the_float32_sum_in_step_order():
    # 2^24 + 1 rounds back to 2^24 in float32 (ties to even), so the four 1s vanish one by one
    # in step order: the sum stays 2^24, and the mean is float32(2^24 / 5) = 3355443.25 (the
    # float32 grid is 0.25 there). An exact or float64 sum would give 3355444.0, and adding
    # the 1s first (4 + 2^24 is exact) would too.
    losses = [torch.tensor([2.0**24]), *[torch.tensor([1.0]) for _ in range(4)]]
    mean, first_bad = _loss_totals(losses, num_members=1, step=0, steps=5)
    assert mean == [3355443.25]
    assert first_bad == [math.inf]


def test_members_apart_and_the_first_non_finite_step_counted_from_the_epoch_start():
    # two members (a seed ensemble): member 1 turns nan at the epoch's 3rd step (index 2),
    # inf at the 5th; member 0 stays finite. The epoch starts at optimizer step 40.
    rows = [[1.0, 2.0], [3.0, 4.0], [5.0, math.nan], [7.0, 1.0], [9.0, math.inf]]
    losses = [torch.tensor(r) for r in rows]
    mean, first_bad = _loss_totals(losses, num_members=2, step=40, steps=5)
    assert mean[0] == (1 + 3 + 5 + 7 + 9) / 5
    assert math.isnan(mean[1])
    assert first_bad == [math.inf, 42.0]


def test_an_epoch_without_steps():
    assert _loss_totals([], num_members=3, step=7, steps=0) == ([0.0] * 3, [math.inf] * 3)
