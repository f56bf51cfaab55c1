"""Was each run trained into its plateau? Read from the stored validation curves (issue 21).

A width table compares runs at their best validation point; that comparison is the paper's
only where training was long enough for the validation metric to stop improving. Per width and
optimizer (the base optimizer, and SAM at the rho chosen for the row), over the row's seeds:

- best at: where in the run the best validation value came (median over seeds, % of the last
  step);
- late gain: how much the best validation value of the last ``LATE_FRACTION`` of training beats
  the best value before it (mean over seeds; in the metric's better direction, 0 when it does
  not);
- seed se: the standard error of the mean best validation value over seeds;
- the verdict: ``plateau`` when the late gain is at most the seed se (training longer would
  move the seed mean, which the width tables compare, by less than its own uncertainty), else
  ``still improving``; ``-`` for one seed;
- final training loss: the mean of the last ``train/loss_first_pass`` (the loss at w, SAM's
  clean pass), where the runner's own loop logged it (a PPO loss is no measure of fit).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from results.analysis import Experiment, WidthRow, optimizer_label
from results.render import Table, fmt_num
from results.store import Store

__all__ = ["LATE_FRACTION", "RegimeCell", "regime_cells", "regime_table", "regime_sentence"]

LATE_FRACTION = 0.1
"""the share of training (by step) whose improvement the plateau test measures"""
TRAIN_LOSS_KEY = "train/loss_first_pass"


@dataclass
class RegimeCell:
    """One optimizer at one width: its seeds' validation curves, summarized."""

    width: float
    optimizer: str  # 'SGD', 'SAM rho=0.01', ...
    seeds: int  # runs with a validation curve
    best_at: float  # median over seeds: step of the best validation value / last step
    late_gain: float  # mean over seeds, >= 0
    seed_se: float  # standard error of the mean best validation value; nan for one seed
    train_loss: float  # mean over seeds of the last training loss; nan where not logged

    @property
    def plateaued(self) -> bool | None:
        if math.isnan(self.seed_se):
            return None
        return self.late_gain <= self.seed_se


def _values(store: Store, run_id: str, key: str) -> list[tuple[int, float]]:
    # SQLite stores a NaN as NULL (a diverged step): such points are left out
    return [(m["step"], m["value"]) for m in store.metrics(run_id, key) if m["value"] is not None]


def _cell(store: Store, row: WidthRow, run_ids: list[str], optimizer: str) -> RegimeCell | None:
    sign = 1.0 if row.mode == "max" else -1.0  # compare sign * value: larger is better
    best_at, late, best, losses = [], [], [], []
    for rid in run_ids:
        curve = _values(store, rid, f"val/{row.target}")
        if not curve:
            continue
        last = curve[-1][0]
        step, value = max(curve, key=lambda sv: sign * sv[1])  # the first of equal bests
        best_at.append(step / last if last else 1.0)
        best.append(value)
        cut = last * (1 - LATE_FRACTION)
        early = [sign * v for s, v in curve if s <= cut]
        recent = [sign * v for s, v in curve if s > cut]
        late.append(max(0.0, max(recent) - max(early)) if early and recent else 0.0)
        loss = _values(store, rid, TRAIN_LOSS_KEY)
        losses.append(loss[-1][1] if loss else math.nan)
    if not best:
        return None
    return RegimeCell(
        width=row.width,
        optimizer=optimizer,
        seeds=len(best),
        best_at=statistics.median(best_at),
        late_gain=statistics.fmean(late),
        seed_se=statistics.stdev(best) / math.sqrt(len(best)) if len(best) > 1 else math.nan,
        train_loss=statistics.fmean(losses),
    )


def regime_cells(store: Store, e: Experiment) -> list[tuple[RegimeCell | None, RegimeCell | None]]:
    """(base, SAM at the chosen rho) per width row of ``e``."""
    base = optimizer_label(e.base_optimizer)
    return [
        (
            _cell(store, r, r.base_ids, base),
            _cell(store, r, r.sam_ids, f"SAM rho={r.rho:g}" if r.rho is not None else "SAM"),
        )
        for r in e.rows
    ]


def regime_table(store: Store, exps: list[Experiment]) -> Table:
    """Every experiment's cells, one row per width and optimizer."""
    table = Table(
        "Training regime: has the validation metric plateaued?",
        [
            "workload",
            "setup",
            "width",
            "optimizer",
            "seeds",
            "best at (% of run)",
            f"late gain (last {LATE_FRACTION:.0%})",
            "seed se",
            "verdict",
            "final train loss",
        ],
        align="llllrrrrlr",
        notes=[
            f"Per seed: the best validation value's position in the run, and how much the best "
            f"value of the last {LATE_FRACTION:.0%} of training beats the best before it (in the "
            "metric's better direction; 0 if it does not). 'plateau' when that late gain "
            "(mean over seeds) is at most the standard error of the seeds' mean best value, "
            "else 'still improving'. Final train loss: the loss at w on the last logged step, "
            "where the runner's own loop logged it. SAM at the rho chosen for the width."
        ],
    )
    for e in exps:
        for cells in regime_cells(store, e):
            for c in cells:
                if c is None:
                    continue
                verdict = {True: "plateau", False: "still improving", None: "-"}[c.plateaued]
                table.records.append(
                    {
                        "workload": e.workload,
                        "setup": e.label,
                        "width": c.width,
                        "optimizer": c.optimizer,
                        "seeds": c.seeds,
                        "best_at": c.best_at,
                        "late_gain": c.late_gain,
                        "seed_se": c.seed_se,
                        "verdict": verdict,
                        "final_train_loss": c.train_loss,
                    }
                )
                table.rows.append(
                    [
                        e.workload,
                        e.label or "-",
                        f"{c.width:g}x",
                        c.optimizer,
                        str(c.seeds),
                        f"{100 * c.best_at:.0f}",
                        fmt_num(c.late_gain, ".3g"),
                        fmt_num(c.seed_se, ".3g"),
                        verdict,
                        fmt_num(c.train_loss, ".3g"),
                    ]
                )
    return table


def regime_sentence(store: Store, e: Experiment) -> str:
    """One generated sentence for the findings: at how many widths each optimizer's validation
    metric plateaued, naming the widths where it did not."""
    cells = regime_cells(store, e)
    parts = []
    for i, name in ((0, f"the base optimizer ({optimizer_label(e.base_optimizer)})"), (1, "SAM")):
        judged = [c[i] for c in cells if c[i] is not None and c[i].plateaued is not None]
        if not judged:
            continue
        not_yet = [f"{c.width:g}x" for c in judged if not c.plateaued]
        part = f"{name} at {len(judged) - len(not_yet)} of {len(judged)} widths"
        parts.append(part + (f" (still improving at {', '.join(not_yet)})" if not_yet else ""))
    if not parts:
        return ""
    return (
        f"Validation plateau (tables/regime.md: late gain over the last {LATE_FRACTION:.0%} "
        f"of training at most the seeds' standard error): {'; '.join(parts)}."
    )
