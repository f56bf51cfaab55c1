"""Several seeds of one run trained at once as a vmapped seed ensemble (samcore/ensemble.py).

Used by ``runners/run.py`` for ``--seeds`` with more than one seed when the workload declares
``supports_seed_ensemble`` (small models without batch norm or dropout) and the run uses
none of micro-batching, m-sharpness, fp16/bf16 or late-phase SAM. Each seed is exactly the
run that ``runners/train.py`` would make for it: the same initial weights (built from the seed's own
init stream), the same batches in the same order (the seed's own data-order generator per
epoch), the same optimizer, schedule and SAM radius (SAM's norm per seed), the same run id,
metric rows, summary and checkpoint (a sequential ``train_run`` resumes it exactly).
Results equal the sequential runs up to float rounding (tests/runners/test_seed_ensemble.py).

Differences, by design: the execution flags ``--compile`` and ``--channels-last`` do not
apply (the supported models are small MLPs); ``time/wall_s`` is the ensemble's wall time
divided by the number of seeds (their share of the machine), and the summary says
``seed_ensemble: S``. A seed that diverges is closed as in a sequential run while the others
go on. Resume: seeds already done are skipped, and a seed that has a row but is not done
(killed mid-run) resumes from its own checkpoint through ``train_run``; only fresh seeds are
trained together.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from tqdm.auto import tqdm

from domains.workload import Workload
from results.store import Store, StoreError
from runners.checkpoint import save_checkpoint
from runners.config import RunConfig
from runners.train import (
    Execution,
    RunOutcome,
    _rng_state,
    checkpoint_path,
    evaluate_and_select,
    finish_run,
    record_start,
    run_optimizer,
    train_run,
)
from samcore import (
    SAM,
    LRSchedule,
    build_optimizer,
    build_scheduler,
    count_params,
    make_generator,
    seed_everything,
    stream_seed,
    train_step,
)
from samcore.ensemble import SeedEnsemble, build_ensemble_optimizer, stack_batches

__all__ = ["can_use_seed_ensemble", "train_seeds"]


def can_use_seed_ensemble(workload: Workload, cfg: RunConfig) -> bool:
    """The workload allows it and the run needs nothing the ensemble does not do."""
    return (
        bool(getattr(workload, "supports_seed_ensemble", False))
        and not workload.owns_loop
        and cfg.m_sharpness == 0
        and cfg.micro_batch_size == 0
        and cfg.precision == "fp32"
        and (cfg.sam_start, cfg.sam_end) == (0.0, 1.0)  # late-phase SAM: sequential runs
    )


def train_seeds(
    workload: Workload, cfgs: list[RunConfig], store: Store, ex: Execution
) -> list[RunOutcome]:
    """Train runs that differ only in their seed; fresh ones as one ensemble."""
    outcomes: dict[str, RunOutcome] = {}
    fresh = []
    for cfg in cfgs:
        if store.get_run(cfg.run_id) is None:
            fresh.append(cfg)
        else:  # done: skipped; killed or failed: resumed from its checkpoint, exactly
            outcomes[cfg.run_id] = train_run(workload, cfg, store, ex)
    if len(fresh) == 1:
        outcomes[fresh[0].run_id] = train_run(workload, fresh[0], store, ex)
    elif fresh:
        outcomes.update(_train_ensemble(workload, fresh, store, ex))
    return [outcomes[cfg.run_id] for cfg in cfgs]


def _optimizer(cfg: RunConfig, c: Any, target: Any) -> torch.optim.Optimizer:
    """The run's optimizer on ``target`` (a model, or a SeedEnsemble), as train_run builds it."""
    build = build_ensemble_optimizer if isinstance(target, SeedEnsemble) else build_optimizer
    return run_optimizer(cfg, c, target, build)


def _seed_optimizer_state(
    ens: SeedEnsemble, optimizer: torch.optim.Optimizer, s: int, model: Any, cfg: RunConfig, c: Any
) -> dict[str, Any]:
    """Seed ``s``'s slice of the ensemble optimizer, as the state_dict of the optimizer that a
    sequential run of that seed would hold (so ``train_run`` can resume it)."""
    single = _optimizer(cfg, c, model)
    base_single = single.base_optimizer if isinstance(single, SAM) else single
    base_ens = optimizer.base_optimizer if isinstance(optimizer, SAM) else optimizer
    for name, stacked in zip(ens.names, ens.stacked):
        state = base_ens.state.get(stacked)
        if state:  # per-seed tensors have the seed dim first; Adam's step count is shared
            base_single.state[model.get_parameter(name)] = {
                k: v[s].clone() if torch.is_tensor(v) and v.ndim > 0 else v
                for k, v in state.items()
            }
    for g_single, g_ens in zip(single.param_groups, optimizer.param_groups):
        g_single.update({k: v for k, v in g_ens.items() if k != "params"})  # lr, initial_lr
    return single.state_dict()


def _train_ensemble(
    workload: Workload, cfgs: list[RunConfig], store: Store, ex: Execution
) -> dict[str, RunOutcome]:
    c, target, device = workload.config, workload.target, torch.device(ex.device)
    S, cfg0 = len(cfgs), cfgs[0]
    models, rng_states = [], []
    for cfg in cfgs:  # each seed's init exactly as train_run draws it
        seed_everything(cfg.seed)
        torch.manual_seed(stream_seed(cfg.seed, "init"))
        models.append(workload.build_model(cfg.width).to(device))
        seed_everything(stream_seed(cfg.seed, "dropout"))
        rng_states.append(_rng_state())  # the supported models draw nothing from it
    n_params = count_params(models[0])
    ens = SeedEnsemble(models)
    loss_fn = ens.loss_fn(workload.loss)
    optimizer = _optimizer(cfg0, c, ens)
    steps_per_epoch = workload.steps_per_epoch()
    scheduler = build_scheduler(
        optimizer,
        LRSchedule(
            c.lr_schedule,
            c.num_epochs * steps_per_epoch,
            tuple(c.lr_milestones),
            c.lr_gamma,
            c.warmup_steps,
        ),
    )
    for cfg in cfgs:
        store.delete_metrics_after(cfg.run_id, -1)
    full_configs = [record_start(store, cfg, ex, workload.domain, n_params) for cfg in cfgs]
    states: list[dict[str, Any]] = [
        {"epoch": 0, "step": 0, "best": None, "wall_time_s": 0.0, "examples": 0, "passes": 0}
        for _ in cfgs
    ]
    results: dict[int, tuple[str, str | None]] = {}  # seed index -> (status, error) once closed
    label = (
        f"{cfg0.workload} {cfg0.optimizer}{f' rho={cfg0.rho:g}' if cfg0.optimizer == 'sam' else ''}"
        f" seeds {','.join(str(cfg.seed) for cfg in cfgs)} (ensemble)"
    )
    bar = tqdm(total=c.num_epochs, desc=label, leave=False, disable=None if ex.progress else True)
    step = 0
    try:
        for epoch in range(c.num_epochs):
            t0 = time.perf_counter()
            ens.train()
            loss_sum = torch.zeros(S, device=device)
            first_bad_step = torch.full((S,), math.inf, device=device)  # no per-step host sync
            step_t = torch.full((), float(step), device=device)
            grad_norm = e_norm = None
            n_steps = 0
            iters = [
                workload.train_batches(epoch, make_generator(cfg.seed, f"data-order/{epoch}"))
                for cfg in cfgs
            ]
            for seed_batches in zip(*iters):
                res = train_step(
                    ens,
                    optimizer,
                    loss_fn,
                    stack_batches(seed_batches),
                    measure_perturbation=n_steps == steps_per_epoch - 1,
                )
                scheduler.step()
                losses = res.metrics["seed/loss"]
                loss_sum += losses
                first_bad_step = torch.where(
                    torch.isfinite(losses), first_bad_step, torch.minimum(first_bad_step, step_t)
                )
                step_t += 1
                grad_norm = res.grad_norm if res.grad_norm is not None else grad_norm
                e_norm = res.perturbation_norm if res.perturbation_norm is not None else e_norm
                n_steps += 1
            step += n_steps
            share = (time.perf_counter() - t0) / S
            bad = first_bad_step.tolist()
            mean_loss = (loss_sum / max(n_steps, 1)).tolist()
            evaluate = (epoch + 1) % c.eval_every == 0 or epoch + 1 == c.num_epochs
            for s, cfg in enumerate(cfgs):
                if s in results:
                    continue
                st = states[s]
                st["epoch"], st["step"] = epoch + 1, step
                st["wall_time_s"] += share
                st["examples"] += n_steps * c.batch_size
                st["passes"] += n_steps * (2 if cfg.optimizer == "sam" else 1)
                row = {
                    "train/loss_first_pass": mean_loss[s],
                    "train/lr": scheduler.get_last_lr()[0],
                    "time/wall_s": st["wall_time_s"],
                    "time/examples_seen": st["examples"],
                    "time/forward_backward_passes": st["passes"],
                }
                if grad_norm is not None:
                    row["sam/grad_norm"] = grad_norm[s].item()
                if e_norm is not None:
                    row["sam/perturbation_norm"] = e_norm[s].item()
                if math.isfinite(bad[s]):
                    results[s] = ("diverged", f"non-finite training loss at step {int(bad[s])}")
                    st["diverged_step"] = int(bad[s])
                    store.log_metrics(cfg.run_id, step, st["epoch"], row)
                    continue
                if evaluate:
                    _evaluate_seed(workload, ens, s, models[s], cfg, row, st, results)
                    if s not in results:
                        save_checkpoint(
                            checkpoint_path(ex.results_dir, cfg.run_id),
                            {
                                "run_id": cfg.run_id,
                                "config": full_configs[s],
                                "model": models[s].state_dict(),
                                "optimizer": _seed_optimizer_state(
                                    ens, optimizer, s, models[s], cfg, c
                                ),
                                "scheduler": scheduler.state_dict(),
                                "scaler": None,
                                "rng": rng_states[s],
                                "state": st,
                            },
                        )
                store.log_metrics(cfg.run_id, step, st["epoch"], row)
            bar.update(1)
            if len(results) == S:
                break
    except KeyboardInterrupt:
        for s, cfg in enumerate(cfgs):
            if s not in results:
                store.finish_run(
                    cfg.run_id,
                    "interrupted",
                    error="interrupted",
                    wall_time_s=states[s]["wall_time_s"],
                    last_step=states[s]["step"],
                )
        raise
    except StoreError:  # disk full: nothing more can be recorded; rerunning resumes
        raise
    except Exception as exc:  # recorded for every open seed, and the grid goes on
        for s in range(S):
            results.setdefault(s, ("failed", f"{type(exc).__name__}: {exc}"))
    finally:
        bar.close()

    outcomes = {}
    for s, cfg in enumerate(cfgs):
        status, error = results.get(s, ("done", None))
        outcomes[cfg.run_id] = finish_run(
            store,
            ex,
            cfg.run_id,
            target,
            n_params,
            states[s],
            status,
            error,
            seed_ensemble=S,
            precision=cfg.precision,
        )
    return outcomes


def _evaluate_seed(
    workload: Workload,
    ens: SeedEnsemble,
    s: int,
    model: Any,
    cfg: RunConfig,
    row: dict[str, float],
    st: dict[str, Any],
    results: dict[int, tuple[str, str | None]],
) -> None:
    """Evaluate seed ``s`` on its own model (as train_run does) and track its best epoch."""
    ens.load_seed_into(s, model)
    evals, diverged = evaluate_and_select(workload, model, cfg, st)
    row.update(evals)
    if diverged:
        results[s] = ("diverged", diverged)
