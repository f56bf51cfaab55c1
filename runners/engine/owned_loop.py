"""Runs of workloads whose library owns the training loop (``Workload.fit``: PPO in
stable-baselines3): the runner seeds, records the run, passes a ``log`` callback that writes
metric rows, and stores the metrics ``fit`` returns under both protocols' names."""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from domains.workload import FitRequest, Workload
from results.store import Store
from runners.engine.config import RunConfig
from runners.engine.records import (
    Execution,
    RunOutcome,
    data_identity_summary,
    record_start,
)
from samcore import count_params, seed_everything


def train_owned_loop(workload: Workload, cfg: RunConfig, store: Store, ex: Execution) -> RunOutcome:
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
        **({"target_unit": unit} if (unit := getattr(target, "label", "")) else {}),
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
        **data_identity_summary(workload),
        **{k: v for k, v in final.items() if k not in known | {"final_step"}},
    }
    store.finish_run(
        run_id, status, summary=summary, error=error, wall_time_s=wall, last_step=last_step
    )
    return RunOutcome(run_id, status, summary, error or "")
