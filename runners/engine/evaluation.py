"""Evaluation and model selection at the end of an epoch: the best epoch by ``val/<target>``
(model selection on validation, never test) and the last one (the final-epoch protocol).

The test split is measured only where a reported number can use it: where validation
improved, and at the last epoch (issue 21: it was up to half of the evaluation time).
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from typing import Any

import torch

from domains.workload import Workload
from runners.engine.config import RunConfig
from runners.engine.records import RunState


def evaluate_and_select(
    workload: Workload,
    model: torch.nn.Module,
    cfg: RunConfig,
    state: RunState,
    *,
    final: bool = True,
) -> tuple[dict[str, float], str | None]:
    """Evaluate ``model`` (eval mode) after ``state.epoch`` epochs and keep the best epoch
    by ``val/<target>`` in ``state.best`` (its test metric is the one reported). Returns
    the metrics and, if the validation metric is not finite, the divergence message (the
    step goes into ``state.diverged_step``).

    Before the ``final`` evaluation, a workload whose ``evaluate`` takes ``splits`` is asked
    for the test split only when validation improved: no reported number uses the test
    metric of any other epoch, and it was up to half of the evaluation time (issue 21)."""
    target = workload.target
    model.eval()
    lazy_test = not final and _takes_splits(workload)
    evals = (
        workload.evaluate(model, splits=SELECTION_SPLITS) if lazy_test else workload.evaluate(model)
    )
    val = evals.get(f"val/{target.name}")
    if val is None:
        raise KeyError(f"{cfg.workload}.evaluate() returned no val/{target.name}")
    if not math.isfinite(val):
        state.diverged_step = state.step
        return evals, f"non-finite val/{target.name} at epoch {state.epoch}"
    improved = state.best is None or target.better(val, state.best["val"])
    test_key = f"test/{target.name}"
    if lazy_test and improved and test_key not in evals:
        evals.update(workload.evaluate(model, splits=("test",)))
    point = {
        "epoch": state.epoch,
        "step": state.step,
        "val": val,
        "test": evals.get(test_key, math.nan),
    }
    state.last = point  # the final-epoch protocol: the last evaluation (the last epoch)
    if improved:
        state.best = dict(point)
    return evals, None


SELECTION_SPLITS = ("train", "val")  # what every evaluation measures; test when it is reported


@functools.cache
def _has_splits_parameter(evaluate: Callable[..., Any]) -> bool:
    return "splits" in inspect.signature(evaluate).parameters


def _takes_splits(workload: Workload) -> bool:
    """Whether the workload's ``evaluate`` can measure some splits only (a workload written
    before ``splits`` existed is evaluated on all of them, as it always was)."""
    return _has_splits_parameter(type(workload).evaluate)
