"""A results store filled with known rows through the Store API, for the report tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from results.store import Store


def start_toy_run(store: Store, run_id: str, **fields: Any) -> None:
    """``store.start_run`` with placeholder values for every field a test leaves out."""
    row: dict[str, Any] = {
        "name": run_id,
        "workload": "toy",
        "domain": "synthetic",
        "optimizer": "sgd",
        "base_optimizer": "sgd",
        "width": 1.0,
        "seed": 0,
        "rho": 0.0,
        "preset": "quick",
        "config": {},
        "n_params": 1,
        "git_commit": "x",
        "hardware": "cpu",
    }
    store.start_run(run_id, **{**row, **fields})


def run_config(
    workload: str,
    *,
    optimizer: str,
    width: float,
    seed: int,
    rho: float = 0.0,
    base_optimizer: str = "sgd",
    preset: str = "quick",
    **workload_config: Any,
) -> dict[str, Any]:
    """What runners/engine/train.py stores under config["run"] (RunConfig.to_dict())."""
    return {
        "workload": workload,
        "preset": preset,
        "width": width,
        "optimizer": optimizer,
        "base_optimizer": base_optimizer,
        "seed": seed,
        "rho": rho,
        "adaptive": False,
        "m_sharpness": 0,
        "micro_batch_size": 0,
        "precision": "fp32",
        "workload_config": {"num_epochs": 3, "label_noise": 0.0, **workload_config},
    }


def add_run(
    store: Store,
    workload: str,
    *,
    optimizer: str,
    width: float,
    seed: int,
    val: float,
    test: float,
    rho: float = 0.0,
    target: str = "acc",
    mode: str = "max",
    status: str = "done",
    domain: str = "vision",
    curve: list[tuple[int, float, float]] = (),
    run_extra: dict[str, Any] | None = None,
    final: tuple[float, float] | None = None,
    changed_from_preset: list[str] | None = None,
    wall_time_s: float | None = None,
    **workload_config: Any,
) -> str:
    """One finished run; ``curve`` = (step, train loss, val metric) rows for the metrics table,
    ``run_extra`` more run-config fields (e.g. late-phase ``sam_start``, ``protocol``),
    ``final`` = (val, test) at the last epoch as the runner stores them (``final/`` keys)."""
    cfg = run_config(
        workload, optimizer=optimizer, width=width, seed=seed, rho=rho, **workload_config
    )
    cfg.update(run_extra or {})
    run_id = f"{workload}-{optimizer}-{rho:g}-w{width:g}-s{seed}-" + "-".join(
        f"{k}{v}" for k, v in sorted({**workload_config, **(run_extra or {})}.items())
    )
    start_toy_run(
        store,
        run_id,
        workload=workload,
        domain=domain,
        optimizer=optimizer,
        base_optimizer=cfg["base_optimizer"],
        width=width,
        seed=seed,
        rho=rho,
        preset=cfg["preset"],
        config={
            "run": cfg,
            "execution": {"device": "cpu"},
            # as the runner stores it; left out = a store written before runs recorded it
            **({} if changed_from_preset is None else {"changed_from_preset": changed_from_preset}),
        },
        n_params=int(1000 * width),
        git_commit="test",
    )
    for step, loss, metric in curve:
        store.log_metrics(
            run_id, step, step / 10, {"train/loss_first_pass": loss, f"val/{target}": metric}
        )
    summary = {
        "target": target,
        "target_mode": mode,
        f"best/val_{target}": val,
        f"best/test_{target}": test,
        "forward_backward_passes": 200 if optimizer == "sam" else 100,
    }
    if final is not None:
        summary.update({f"final/val_{target}": final[0], f"final/test_{target}": final[1]})
    store.finish_run(
        run_id,
        status,
        summary=summary,
        error=None if status == "done" else status,
        wall_time_s=wall_time_s,
    )
    return run_id


def toy_store(path: Path) -> Store:
    """'toy-acc' (a made-up workload, max metric) at widths 1x, 2x, 4x, 3 seeds, base and SAM at
    rho 0.05 and 0.1, gains known by construction; plus label-noise runs at 1x."""
    store = Store(path)
    for w_i, width in enumerate((1.0, 2.0, 4.0)):
        for seed in range(3):
            curve = [(s, 1.0 / (s + 1), 50 + s) for s in (10, 20, 30)]
            base = 80.0 + w_i + seed
            add_run(
                store,
                "toy-acc",
                optimizer="sgd",
                width=width,
                seed=seed,
                val=base,
                test=base,
                curve=curve,
            )
            # rho 0.05: gain (w_i + 1) * (seed + 1) on test; rho 0.1 better on test, worse on val
            g = (w_i + 1) * (seed + 1)
            add_run(
                store,
                "toy-acc",
                optimizer="sam",
                rho=0.05,
                width=width,
                seed=seed,
                val=base + 1,
                test=base + g,
                curve=curve,
            )
            add_run(
                store,
                "toy-acc",
                optimizer="sam",
                rho=0.1,
                width=width,
                seed=seed,
                val=base + 0.5,
                test=base + 10 * g,
            )
    return store
