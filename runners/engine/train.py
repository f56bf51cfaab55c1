"""The training loop every supervised workload shares: runs, from config to store rows.

config -> workload.build_model -> (SAM or base) steps over workload.train_batches ->
workload.evaluate every ``eval_every`` epochs (the test split only where validation improved
and at the last epoch) -> metric rows and a checkpoint -> final row.
Both protocols are stored in every run's summary: ``best/{epoch,val_<t>,test_<t>}`` at the
epoch of the best ``val/<target>`` (model selection) and ``final/{epoch,val_<t>,test_<t>}`` at
the last epoch (always evaluated); ``RunConfig.protocol`` says which one the experiment reports.

One epoch loop (``train_members``) trains a ``Trainee``: one model (``SingleModel``, here), or
several seeds of one run stacked into a vmapped seed ensemble (``runners/engine/train_ensemble.py``).
Each run it trains is a ``Member`` with its own typed ``RunState``, metric rows and
checkpoint, written by the same code in both modes.

Beside it: ``records.py`` (a run's row, state and summary), ``evaluation.py`` (evaluation and
model selection), ``owned_loop.py`` (workloads whose library owns the loop).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from domains.workload import Workload
from results.store import Store, StoreError
from runners.engine.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    restore_training_state,
    save_checkpoint,
)
from runners.engine.config import RunConfig
from runners.engine.evaluation import evaluate_and_select
from runners.engine.lease import leased  # issue 20, finding 1: a run is claimed before it trains
from runners.engine.owned_loop import train_owned_loop
from runners.engine.records import (
    Execution,
    Member,
    RunOutcome,
    RunState,
    checkpoint_path,
    finish_run,
    git_commit,
    hardware_string,
    record_start,
)
from samcore import (
    LRSchedule,
    StepResult,
    build_optimizer,
    build_scheduler,
    count_params,
    format_width,
    make_generator,
    seed_everything,
    stream_seed,
    train_step,
)

__all__ = [
    "Execution",
    "RunOutcome",
    "RunState",
    "Member",
    "Trainee",
    "SingleModel",
    "train_run",
    "train_members",
    "git_commit",
    "hardware_string",
    "checkpoint_path",
    "record_start",
    "finish_run",
]

_AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Trainee(Protocol):
    """What the epoch loop steps: ``module`` under ``optimizer``, for ``num_members`` runs."""

    module: torch.nn.Module  # handed to samcore.train_step
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler | None
    loss_fn: Callable[..., Any]
    num_members: int
    n_params: int  # of one member's model
    label: str  # the progress bar's description

    def train(self) -> None: ...  # the models in train mode
    def batches(self, epoch: int) -> Iterable[Any]: ...  # the epoch's training batches
    def member_losses(self, res: StepResult) -> torch.Tensor: ...  # (num_members,) loss at w
    def member_model(self, s: int) -> torch.nn.Module: ...  # member s as a plain model
    def checkpoint(self, s: int) -> dict[str, Any]: ...  # member s's model/optimizer/rng...


def run_optimizer(
    cfg: RunConfig, c: Any, target: Any, build: Callable[..., Any] = build_optimizer
) -> torch.optim.Optimizer:
    """The run's optimizer from its config: the base optimizer, or SAM around it (``build`` is
    ``samcore.build_optimizer``, or the seed ensemble's builder for a stacked model)."""
    return build(
        target,
        cfg.base_optimizer,
        lr=c.learning_rate,
        weight_decay=c.weight_decay,
        momentum=c.momentum,
        betas=c.betas,
        eps=c.adam_eps,
        sam=cfg.optimizer == "sam",
        rho=cfg.rho,
        adaptive=cfg.adaptive,
        decay_norm_and_bias=c.decay_norm_and_bias,
    )


def run_scheduler(optimizer: torch.optim.Optimizer, workload: Workload) -> Any:
    """The workload's LR schedule over all of its steps (per-step ``scheduler.step()``)."""
    c = workload.config
    total_steps = c.num_epochs * workload.steps_per_epoch()
    return build_scheduler(
        optimizer,
        LRSchedule(c.lr_schedule, total_steps, tuple(c.lr_milestones), c.lr_gamma, c.warmup_steps),
    )


def run_label(cfg: RunConfig, who: str) -> str:
    rho = f" rho={cfg.rho:g}" if cfg.optimizer == "sam" else ""
    return f"{cfg.workload} {cfg.optimizer}{rho} {who}"


class SingleModel:
    """One run's model, optimizer, schedule and scaler (the loop's plain mode)."""

    def __init__(self, workload: Workload, cfg: RunConfig, ex: Execution) -> None:
        self.workload, self.cfg = workload, cfg
        seed_everything(cfg.seed)
        torch.manual_seed(stream_seed(cfg.seed, "init"))  # init stream, independent of data order
        model = workload.build_model(cfg.width).to(torch.device(ex.device))
        if ex.channels_last:
            model = model.to(memory_format=torch.channels_last)  # 4-D tensors only; others as is
        self.model = model
        # The compiled wrapper shares the model's parameters; checkpoints and evaluation use
        # the plain model, so state_dict keys stay the same with and without --compile.
        self.module = torch.compile(model) if ex.compile else model
        self.n_params = count_params(model)
        self.optimizer = run_optimizer(cfg, workload.config, model)
        self.scheduler = run_scheduler(self.optimizer, workload)
        device_type = torch.device(ex.device).type
        self.scaler = torch.amp.GradScaler(device_type) if cfg.precision == "fp16" else None
        self.loss_fn = workload.loss
        self.num_members = 1
        self.label = run_label(cfg, f"w{format_width(cfg.width)} s{cfg.seed}")
        seed_everything(stream_seed(cfg.seed, "dropout"))  # what the global generator serves now

    def train(self) -> None:
        self.model.train()

    def batches(self, epoch: int) -> Iterable[Any]:
        return self.workload.train_batches(
            epoch, make_generator(self.cfg.seed, f"data-order/{epoch}")
        )

    def member_losses(self, res: StepResult) -> torch.Tensor:
        return res.loss.detach().reshape(1)

    def member_model(self, s: int) -> torch.nn.Module:
        return self.model

    def checkpoint(self, s: int) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": capture_rng_state(),
        }

    def resume(self, run_id: str, results_dir: Path) -> tuple[RunState | None, list[str]]:
        """The newest checkpoint that fits, loaded into the model, optimizer, schedule, scaler
        and generators; its state (None: none fits) and the warnings about those refused."""
        payload, warnings = load_checkpoint(
            checkpoint_path(results_dir, run_id),
            run_id,
            lambda p: restore_training_state(
                p, self.model, self.optimizer, self.scheduler, self.scaler
            ),
        )
        return (RunState.from_payload(payload["state"]) if payload else None), warnings


@leased
def train_run(workload: Workload, cfg: RunConfig, store: Store, ex: Execution) -> RunOutcome:
    """Train one run (or skip it if done, or resume it from its checkpoint) and store it."""
    run_id = cfg.run_id
    row = store.get_run(run_id)
    # done and diverged are results; a rerun would repeat the same experiment (failed runs and
    # killed ones, still 'running', are run again).
    if row is not None and row["status"] in ("done", "diverged"):
        return RunOutcome(run_id, "skipped", row["summary"] or {}, f"already {row['status']}")
    if workload.owns_loop:
        return train_owned_loop(workload, cfg, store, ex)

    trainee = SingleModel(workload, cfg, ex)
    state, notes = RunState(), []
    if row is not None:  # a run that was killed or failed: resume from its checkpoint
        # a checkpoint that does not fit (another code version) is refused like a corrupt one
        resumed, warnings = trainee.resume(run_id, ex.results_dir)
        for warning in warnings:  # corrupt files are said on stderr, never loaded
            tqdm.write(f"warning: {warning}", file=sys.stderr)
        if resumed is not None:
            state = resumed
            notes.append(f"resumed from epoch {state.epoch} (step {state.step})")
        else:
            notes.append("no usable checkpoint; starting from scratch")
        store.delete_metrics_after(run_id, state.step if resumed is not None else -1)

    member = Member(cfg, state, record_start(store, cfg, ex, workload.domain, trainee.n_params))
    for note in notes:
        tqdm.write(f"{trainee.label}: {note}")
    train_members(workload, trainee, [member], store, ex)
    return finish_run(store, ex, workload, trainee.n_params, member, precision=cfg.precision)


def train_members(
    workload: Workload, trainee: Trainee, members: list[Member], store: Store, ex: Execution
) -> None:
    """The epoch loop: train ``members`` (runs that differ in their seed at most, all at the
    same epoch) from their state to the workload's last epoch, writing each one's metric rows
    and checkpoints; leaves each member's ``closed`` as (status, error) or None (done).

    A member whose loss or validation metric is non-finite is closed as diverged while the
    others go on. Ctrl-C closes the open ones as interrupted and is raised again; a full store
    is raised (rerunning resumes); any other error fails every open member."""
    c = workload.config
    bar = tqdm(
        total=c.num_epochs,
        initial=members[0].state.epoch,
        desc=trainee.label,
        leave=False,
        disable=None if ex.progress else True,
        dynamic_ncols=True,
    )
    try:
        for epoch in range(members[0].state.epoch, c.num_epochs):
            totals = _train_epoch(workload, trainee, members[0].cfg, epoch, members[0].state.step)
            for s, member in enumerate(members):
                if member.closed is None:
                    _end_epoch(workload, trainee, s, member, totals, store, ex)
            bar.update(1)
            bar.set_postfix(loss=f"{totals.mean_losses[0]:.4g}")
            if all(m.closed is not None for m in members):
                break
    except KeyboardInterrupt:
        for member in members:
            if member.closed is None:
                store.finish_run(
                    member.cfg.run_id,
                    "interrupted",
                    error="interrupted",
                    wall_time_s=member.state.wall_time_s,
                    last_step=member.state.step,
                )
        raise
    except StoreError:  # disk full: nothing more can be recorded; rerunning resumes
        raise
    except Exception as exc:  # recorded for every open member, and the grid goes on
        for member in members:
            if member.closed is None:
                member.closed = ("failed", f"{type(exc).__name__}: {exc}")
    finally:
        bar.close()


@dataclass
class _EpochTotals:
    """What one epoch of steps measured, per member (tensors read once, at its end)."""

    epoch: int
    steps: int = 0
    ascents: int = 0  # steps that took SAM's ascent (two passes)
    seconds: float = 0.0
    mean_losses: list[float] = field(default_factory=list)
    first_bad_steps: list[float] = field(default_factory=list)  # inf: all losses finite
    grad_norm: torch.Tensor | None = None  # the last one measured, per member
    perturbation_norm: torch.Tensor | None = None
    skipped: int = 0  # GradScaler skipped steps


def _train_epoch(
    workload: Workload, trainee: Trainee, cfg: RunConfig, epoch: int, step: int
) -> _EpochTotals:
    """One epoch of ``train_step`` calls from optimizer step ``step`` on."""
    t0 = time.perf_counter()
    totals = _EpochTotals(epoch)
    steps_per_epoch = workload.steps_per_epoch()
    total_steps = workload.config.num_epochs * steps_per_epoch
    # What every step passes, looked up once: on a small model each Python line and tensor
    # op per step is a visible share of it (issue 21, benchmarks/loop_overhead.py).
    step_options = {
        "micro_batch_size": cfg.micro_batch_size or None,
        "scaler": trainee.scaler,
        "autocast_dtype": _AUTOCAST[cfg.precision],
        "m_sharpness": cfg.m_sharpness or None,
        "split": getattr(workload, "split_batch", None),
    }
    is_sam = cfg.optimizer == "sam"
    trainee.train()
    # The steps' losses stay on the device (no host sync); they are summed and checked for
    # non-finite values once, at the epoch's end (``_loss_totals``).
    losses: list[torch.Tensor] = []
    for batch in trainee.batches(epoch):
        # late-phase SAM: the ascent only inside [sam_start, sam_end) of training
        ascent = is_sam and cfg.sam_active(step + totals.steps, total_steps)
        res = train_step(
            trainee.module,
            trainee.optimizer,
            trainee.loss_fn,
            batch,
            measure_perturbation=totals.steps == steps_per_epoch - 1,
            ascent=ascent,
            **step_options,
        )
        trainee.scheduler.step()
        losses.append(trainee.member_losses(res))
        if trainee.scaler is not None:
            totals.skipped += bool(res.skipped)  # synced by the scaler anyway
        if res.grad_norm is not None:
            totals.grad_norm = res.grad_norm.reshape(-1)
        if res.perturbation_norm is not None:
            totals.perturbation_norm = res.perturbation_norm.reshape(-1)
        totals.steps += 1
        totals.ascents += ascent
    totals.seconds = time.perf_counter() - t0
    totals.mean_losses, totals.first_bad_steps = _loss_totals(
        losses, trainee.num_members, step, totals.steps
    )
    return totals


def _loss_totals(
    losses: list[torch.Tensor], num_members: int, step: int, steps: int
) -> tuple[list[float], list[float]]:
    """Per member: the epoch's mean step loss and the first step (counted from ``step``) whose
    loss is not finite (inf: none). The sum is float32, added in step order, as a running
    ``loss_sum += loss`` on the device would add it (numpy's ``add.accumulate`` is sequential,
    unlike ``sum``'s pairwise order), so the stored ``train/loss_first_pass`` is the same."""
    if not losses:
        return [0.0] * num_members, [math.inf] * num_members
    per_step = torch.stack(losses).detach().to("cpu", torch.float32).numpy()  # (steps, members)
    running = np.add.accumulate(per_step, axis=0, dtype=np.float32)
    mean = torch.from_numpy(running[-1].copy()) / max(steps, 1)
    bad = ~np.isfinite(per_step)
    first_bad = [
        float(step + int(np.argmax(bad[:, s]))) if bad[:, s].any() else math.inf
        for s in range(per_step.shape[1])
    ]
    return mean.tolist(), first_bad


def _end_epoch(
    workload: Workload,
    trainee: Trainee,
    s: int,
    member: Member,
    totals: _EpochTotals,
    store: Store,
    ex: Execution,
) -> None:
    """Member ``s``'s end of an epoch: its state, metric row, evaluation and checkpoint."""
    c, st, run_id = workload.config, member.state, member.cfg.run_id
    st.epoch, st.step = totals.epoch + 1, st.step + totals.steps
    st.wall_time_s += totals.seconds / trainee.num_members  # an ensemble member's share
    st.examples += totals.steps * c.batch_size
    st.passes += totals.steps + totals.ascents
    row: dict[str, float] = {
        "train/loss_first_pass": totals.mean_losses[s],
        "train/lr": trainee.scheduler.get_last_lr()[0],
        "time/wall_s": st.wall_time_s,
        "time/examples_seen": st.examples,
        "time/forward_backward_passes": st.passes,
    }
    if trainee.scaler is not None:
        row["train/skipped_steps"] = totals.skipped
        row["train/loss_scale"] = trainee.scaler.get_scale()
    if totals.grad_norm is not None:
        row["sam/grad_norm"] = totals.grad_norm[s].item()
    if totals.perturbation_norm is not None:
        row["sam/perturbation_norm"] = totals.perturbation_norm[s].item()
    bad = totals.first_bad_steps[s]
    if math.isfinite(bad):
        member.closed = ("diverged", f"non-finite training loss at step {int(bad)}")
        st.diverged_step = int(bad)
    elif st.epoch % c.eval_every == 0 or st.epoch == c.num_epochs:
        evals, diverged = evaluate_and_select(
            workload, trainee.member_model(s), member.cfg, st, final=st.epoch == c.num_epochs
        )
        row.update(evals)
        if diverged:
            member.closed = ("diverged", diverged)
        else:
            store.log_metrics(run_id, st.step, st.epoch, row)
            now = time.monotonic()
            if st.epoch == c.num_epochs or now - member.checkpointed_at >= ex.checkpoint_every_s:
                payload = {"run_id": run_id, "config": member.full_config, **trainee.checkpoint(s)}
                save_checkpoint(
                    checkpoint_path(ex.results_dir, run_id), {**payload, "state": st.to_payload()}
                )
                member.checkpointed_at = time.monotonic()
            if ex.verbose:
                shown = " ".join(f"{k} {v:.4g}" for k, v in evals.items())
                who = f" seed {member.cfg.seed}" if trainee.num_members > 1 else ""
                tqdm.write(
                    f"{trainee.label}{who} | epoch {st.epoch}/{c.num_epochs} "
                    f"step {st.step} | {shown}"
                )
            return
    store.log_metrics(run_id, st.step, st.epoch, row)
