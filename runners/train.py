"""The training loop every supervised workload shares: one run, from config to store row.

config -> workload.build_model -> (SAM or base) steps over workload.train_batches ->
workload.evaluate every ``eval_every`` epochs -> metric rows and a checkpoint -> final row.
Both protocols are stored in every run's summary: ``best/{epoch,val_<t>,test_<t>}`` at the
epoch of the best ``val/<target>`` (model selection) and ``final/{epoch,val_<t>,test_<t>}`` at
the last epoch (always evaluated); ``RunConfig.protocol`` says which one the experiment reports.
"""

from __future__ import annotations

import math
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from domains.workload import FitRequest, Workload
from results.store import Store, StoreError
from runners.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    restore_training_state,
    save_checkpoint,
)
from runners.config import RunConfig
from samcore import (
    LRSchedule,
    build_optimizer,
    build_scheduler,
    count_params,
    format_width,
    make_generator,
    seed_everything,
    stream_seed,
    train_step,
)

__all__ = ["Execution", "RunOutcome", "train_run", "git_commit", "hardware_string"]


@dataclass(frozen=True)
class Execution:
    """How to run (not part of the run's identity)."""

    device: str = "cpu"
    results_dir: Path = Path("results")
    progress: bool = True
    verbose: bool = False
    channels_last: bool = False  # conv weights and activations NHWC (tensor cores on CUDA)
    compile: bool = False  # torch.compile the model for the training steps


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    status: str  # done | diverged | failed | skipped
    summary: dict[str, Any]
    message: str


def git_commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (rev or "unknown") + ("+dirty" if dirty else "")


def hardware_string(device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return (
        f"{platform.node()} {device.type}:{name or platform.machine()} "
        f"threads={torch.get_num_threads()} torch={torch.__version__}"
    )


_rng_state = capture_rng_state  # the name runners/train_ensemble.py imports


def checkpoint_path(results_dir: Path, run_id: str) -> Path:
    return Path(results_dir) / "checkpoints" / f"{run_id}.pt"


def record_start(
    store: Store, cfg: RunConfig, ex: Execution, domain: str, n_params: int | None
) -> dict[str, Any]:
    """Write the run's row as ``running``; returns the full config stored with it
    (``n_params`` None: the model was never built)."""
    full_config = {
        "run": cfg.to_dict(),
        "execution": {
            "device": ex.device,
            "results_dir": str(ex.results_dir),
            "channels_last": ex.channels_last,
            "compile": ex.compile,
        },
    }
    store.start_run(
        cfg.run_id,
        name=cfg.run_name(),
        workload=cfg.workload,
        domain=domain,
        optimizer=cfg.optimizer,
        base_optimizer=cfg.base_optimizer,
        width=cfg.width,
        seed=cfg.seed,
        rho=cfg.rho,
        preset=cfg.preset,
        config=full_config,
        n_params=n_params,
        git_commit=git_commit(),
        hardware=hardware_string(torch.device(ex.device)),
    )
    return full_config


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


def train_run(workload: Workload, cfg: RunConfig, store: Store, ex: Execution) -> RunOutcome:
    """Train one run (or skip it if done, or resume it from its checkpoint) and store it."""
    run_id = cfg.run_id
    row = store.get_run(run_id)
    # done and diverged are results; a rerun would repeat the same experiment (failed runs and
    # killed ones, still 'running', are run again).
    if row is not None and row["status"] in ("done", "diverged"):
        return RunOutcome(run_id, "skipped", row["summary"] or {}, f"already {row['status']}")

    if workload.owns_loop:
        return _train_owned_loop(workload, cfg, store, ex)
    c = workload.config
    device = torch.device(ex.device)
    target = workload.target
    seed_everything(cfg.seed)
    torch.manual_seed(stream_seed(cfg.seed, "init"))  # init stream, independent of data order
    model = workload.build_model(cfg.width).to(device)
    if ex.channels_last:
        model = model.to(memory_format=torch.channels_last)  # 4-D tensors only; others as is
    # The compiled wrapper shares the model's parameters; checkpoints and evaluation use the
    # plain model, so state_dict keys stay the same with and without --compile.
    step_model = torch.compile(model) if ex.compile else model
    n_params = count_params(model)
    optimizer = run_optimizer(cfg, c, model)
    steps_per_epoch = workload.steps_per_epoch()
    total_steps = c.num_epochs * steps_per_epoch
    scheduler = build_scheduler(
        optimizer,
        LRSchedule(c.lr_schedule, total_steps, tuple(c.lr_milestones), c.lr_gamma, c.warmup_steps),
    )
    autocast_dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.precision]
    scaler = torch.amp.GradScaler(device.type) if cfg.precision == "fp16" else None
    seed_everything(stream_seed(cfg.seed, "dropout"))  # what the global generator serves now

    state: dict[str, Any] = {
        "epoch": 0,
        "step": 0,
        "best": None,
        "wall_time_s": 0.0,
        "examples": 0,
        "passes": 0,
    }
    ckpt = checkpoint_path(ex.results_dir, run_id)
    notes: list[str] = []
    if row is not None:  # a run that was killed or failed: resume from its checkpoint
        # a checkpoint that does not fit (another code version) is refused like a corrupt one
        payload, warnings = load_checkpoint(
            ckpt, run_id, lambda p: restore_training_state(p, model, optimizer, scheduler, scaler)
        )
        for warning in warnings:  # corrupt files are said on stderr, never loaded
            tqdm.write(f"warning: {warning}", file=sys.stderr)
        if payload is not None:
            state = payload["state"]
            notes.append(f"resumed from epoch {state['epoch']} (step {state['step']})")
        else:
            notes.append("no usable checkpoint; starting from scratch")
        store.delete_metrics_after(run_id, state["step"] if payload is not None else -1)

    full_config = record_start(store, cfg, ex, workload.domain, n_params)
    label = (
        f"{cfg.workload} {cfg.optimizer}{'' if cfg.optimizer != 'sam' else f' rho={cfg.rho:g}'} "
        f"w{format_width(cfg.width)} s{cfg.seed}"
    )
    for note in notes:
        tqdm.write(f"{label}: {note}")

    bar = tqdm(
        total=c.num_epochs,
        initial=state["epoch"],
        desc=label,
        leave=False,
        disable=None if ex.progress else True,
        dynamic_ncols=True,
    )
    status, error = "done", None
    try:
        for epoch in range(state["epoch"], c.num_epochs):
            t0 = time.perf_counter()
            model.train()
            loss_sum = torch.zeros((), device=device)
            first_bad_step = torch.full((), math.inf, device=device)  # no per-step host sync
            step_t = torch.full((), float(state["step"]), device=device)
            grad_norm = e_norm = None
            n_steps = skipped = 0
            gen = make_generator(cfg.seed, f"data-order/{epoch}")
            for batch in workload.train_batches(epoch, gen):
                measure = n_steps == steps_per_epoch - 1
                # late-phase SAM: the ascent only inside [sam_start, sam_end) of training
                ascent = cfg.optimizer == "sam" and cfg.sam_active(state["step"], total_steps)
                res = train_step(
                    step_model,
                    optimizer,
                    workload.loss,
                    batch,
                    micro_batch_size=cfg.micro_batch_size or None,
                    scaler=scaler,
                    autocast_dtype=autocast_dtype,
                    m_sharpness=cfg.m_sharpness or None,
                    measure_perturbation=measure,
                    split=getattr(workload, "split_batch", None),
                    ascent=ascent,
                )
                scheduler.step()
                loss = res.loss.detach().to(device)
                loss_sum += loss
                first_bad_step = torch.where(
                    torch.isfinite(loss), first_bad_step, torch.minimum(first_bad_step, step_t)
                )
                step_t += 1
                skipped += bool(res.skipped) if scaler is not None else 0  # synced by the scaler
                if res.grad_norm is not None:
                    grad_norm = res.grad_norm
                if res.perturbation_norm is not None:
                    e_norm = res.perturbation_norm
                state["step"] += 1
                n_steps += 1
                state["examples"] += c.batch_size
                state["passes"] += 2 if ascent else 1
            state["epoch"] = epoch + 1
            state["wall_time_s"] += time.perf_counter() - t0
            bad = first_bad_step.item()
            row_metrics: dict[str, float] = {
                "train/loss_first_pass": (loss_sum / max(n_steps, 1)).item(),
                "train/lr": scheduler.get_last_lr()[0],
                "time/wall_s": state["wall_time_s"],
                "time/examples_seen": state["examples"],
                "time/forward_backward_passes": state["passes"],
            }
            if scaler is not None:
                row_metrics["train/skipped_steps"] = skipped
                row_metrics["train/loss_scale"] = scaler.get_scale()
            if grad_norm is not None:
                row_metrics["sam/grad_norm"] = grad_norm.item()
            if e_norm is not None:
                row_metrics["sam/perturbation_norm"] = e_norm.item()
            if math.isfinite(bad):
                status, error = "diverged", f"non-finite training loss at step {int(bad)}"
                state["diverged_step"] = int(bad)
                store.log_metrics(run_id, state["step"], state["epoch"], row_metrics)
                break
            if state["epoch"] % c.eval_every == 0 or state["epoch"] == c.num_epochs:
                evals, diverged = evaluate_and_select(workload, model, cfg, state)
                row_metrics.update(evals)
                if diverged:
                    status, error = "diverged", diverged
                    store.log_metrics(run_id, state["step"], state["epoch"], row_metrics)
                    break
                store.log_metrics(run_id, state["step"], state["epoch"], row_metrics)
                save_checkpoint(
                    ckpt,
                    {
                        "run_id": run_id,
                        "config": full_config,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "scaler": scaler.state_dict() if scaler is not None else None,
                        "rng": _rng_state(),
                        "state": state,
                    },
                )
                if ex.verbose:
                    shown = " ".join(f"{k} {v:.4g}" for k, v in evals.items())
                    tqdm.write(
                        f"{label} | epoch {state['epoch']}/{c.num_epochs} "
                        f"step {state['step']} | {shown}"
                    )
            else:
                store.log_metrics(run_id, state["step"], state["epoch"], row_metrics)
            bar.update(1)
            bar.set_postfix(loss=f"{row_metrics['train/loss_first_pass']:.4g}")
    except KeyboardInterrupt:
        store.finish_run(
            run_id,
            "interrupted",
            error="interrupted",
            wall_time_s=state["wall_time_s"],
            last_step=state["step"],
        )
        raise
    except StoreError:  # disk full: nothing more can be recorded; rerunning resumes
        raise
    except Exception as exc:  # recorded, and the grid goes on
        status, error = "failed", f"{type(exc).__name__}: {exc}"
    finally:
        bar.close()

    return finish_run(
        store, ex, run_id, target, n_params, state, status, error, precision=cfg.precision
    )


def evaluate_and_select(
    workload: Workload, model: torch.nn.Module, cfg: RunConfig, state: dict[str, Any]
) -> tuple[dict[str, float], str | None]:
    """Evaluate ``model`` (eval mode) after ``state["epoch"]`` epochs and keep the best epoch
    by ``val/<target>`` in ``state["best"]`` (its test metric is the one reported). Returns
    the metrics and, if the validation metric is not finite, the divergence message (the
    step goes into ``state["diverged_step"]``)."""
    target = workload.target
    model.eval()
    evals = workload.evaluate(model)
    val = evals.get(f"val/{target.name}")
    if val is None:
        raise KeyError(f"{cfg.workload}.evaluate() returned no val/{target.name}")
    if not math.isfinite(val):
        state["diverged_step"] = state["step"]
        return evals, f"non-finite val/{target.name} at epoch {state['epoch']}"
    point = {
        "epoch": state["epoch"],
        "step": state["step"],
        "val": val,
        "test": evals.get(f"test/{target.name}", math.nan),
    }
    state["last"] = point  # the final-epoch protocol: the last evaluation (the last epoch)
    if state["best"] is None or target.better(val, state["best"]["val"]):
        state["best"] = dict(point)
    return evals, None


def finish_run(
    store: Store,
    ex: Execution,
    run_id: str,
    target: Any,
    n_params: int,
    state: dict[str, Any],
    status: str,
    error: str | None,
    **extra: Any,
) -> RunOutcome:
    """Store a trained run's summary and final status (``extra`` goes into the summary).

    ``final/*`` is the last evaluation of a run that finished (status done), which is the last
    epoch's; a diverged or failed run has no final model to report (None)."""
    best = state["best"] or {}
    last = (state.get("last") or {}) if status == "done" else {}
    summary = {
        "target": target.name,
        "target_mode": target.mode,
        "n_params": n_params,
        "best/epoch": best.get("epoch"),
        f"best/val_{target.name}": best.get("val"),
        f"best/test_{target.name}": best.get("test"),
        "final/epoch": last.get("epoch"),
        f"final/val_{target.name}": last.get("val"),
        f"final/test_{target.name}": last.get("test"),
        "steps": state["step"],
        "epochs": state["epoch"],
        "examples_seen": state["examples"],
        "forward_backward_passes": state["passes"],
        "wall_time_s": state["wall_time_s"],
        **extra,
    }
    if "diverged_step" in state:
        summary["diverged_step"] = state["diverged_step"]
    store.finish_run(
        run_id,
        status,
        summary=summary,
        error=error,
        wall_time_s=state["wall_time_s"],
        last_step=state["step"],
    )
    if status == "done":  # keep only the final model
        Path(str(checkpoint_path(ex.results_dir, run_id)) + ".prev").unlink(missing_ok=True)
    return RunOutcome(run_id, status, summary, error or "")


def _train_owned_loop(
    workload: Workload, cfg: RunConfig, store: Store, ex: Execution
) -> RunOutcome:
    """A workload whose library owns the loop (``Workload.fit``): the runner seeds, records
    the run, passes a ``log`` callback into the store, and stores the returned metrics.
    Such runs restart from scratch after a kill (the loop's own checkpoints are its business)."""
    run_id, target, device = cfg.run_id, workload.target, torch.device(ex.device)
    seed_everything(cfg.seed)
    with torch.device("meta"):
        n_params = count_params(workload.build_model(cfg.width))
    store.delete_metrics_after(run_id, -1)
    record_start(store, cfg, ex, workload.domain, n_params)
    last_step = 0

    def log(step: int, metrics: dict[str, float]) -> None:
        nonlocal last_step
        last_step = step
        store.log_metrics(run_id, step, None, metrics)
        if ex.verbose:
            tqdm.write(
                f"{cfg.workload} {cfg.optimizer} step {step} | "
                + " ".join(f"{k} {v:.4g}" for k, v in metrics.items())
            )

    t0 = time.perf_counter()
    status, error, final = "done", None, {}
    try:
        final = workload.fit(
            FitRequest(
                width=cfg.width,
                seed=cfg.seed,
                sam=cfg.optimizer == "sam",
                base_optimizer=cfg.base_optimizer,
                rho=cfg.rho,
                adaptive=cfg.adaptive,
                device=device,
                log=log,
                checkpoint_dir=Path(ex.results_dir) / "checkpoints" / run_id,
                progress=ex.progress,
            )
        )
        if not math.isfinite(final.get(f"val/{target.name}", math.nan)):
            status, error = "diverged", f"non-finite val/{target.name}"
    except KeyboardInterrupt:
        store.finish_run(run_id, "interrupted", error="interrupted", last_step=last_step)
        raise
    except Exception as exc:  # recorded, and the grid goes on
        status, error = "failed", f"{type(exc).__name__}: {exc}"
    wall = time.perf_counter() - t0
    t = target.name
    # best/: the loop's selected point (e.g. PPO's best val checkpoint); final/: its last
    # evaluation, of the policy at the end of training. Steps are the loop's own (env steps).
    known = {f"val/{t}", f"test/{t}", f"final_val/{t}", f"final_test/{t}", "best_step"}
    summary = {
        "target": t,
        "target_mode": target.mode,
        "n_params": n_params,
        "best/epoch": None,
        "best/step": final.get("best_step"),
        f"best/val_{t}": final.get(f"val/{t}"),
        f"best/test_{t}": final.get(f"test/{t}"),
        "final/epoch": None,
        "final/step": final.get("final_step", last_step if final else None),
        f"final/val_{t}": final.get(f"final_val/{t}", final.get(f"val/{t}")),
        f"final/test_{t}": final.get(f"final_test/{t}", final.get(f"test/{t}")),
        "precision": cfg.precision,
        "steps": last_step,
        "wall_time_s": wall,
        **{k: v for k, v in final.items() if k not in known | {"final_step"}},
    }
    store.finish_run(
        run_id, status, summary=summary, error=error, wall_time_s=wall, last_step=last_step
    )
    return RunOutcome(run_id, status, summary, error or "")
