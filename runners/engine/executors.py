"""The sweep's executors: where each task of a sweep trains (runners/sweep.py decides what).

``run_local`` trains each task (one run, or the seeds of one run as a seed ensemble) in its own
spawned process, at most N at a time; ``run_ray`` trains each run as one Ray task that returns
its rows for the driver to write. Both call ``report(status, cfg, summary, message, wall)`` in
the driver as each run ends, and record a run whose worker died as ``failed``.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import signal
import tempfile
import threading
import time
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import torch

from domains import get_spec
from results.store import Store, StoreError
from runners.engine.config import RunConfig, workload_for_run
from runners.engine.lease import held_by_other, hold_lease
from runners.engine.sweep_options import worker_threads
from runners.engine.train import Execution, record_start, train_run
from runners.engine.train_ensemble import train_seeds
from samcore import format_width

FINISHED = ("done", "diverged")  # outcomes a rerun would only reproduce: skipped


# ---------------------------------------------------------------------------------- helpers
def run_label(cfg: RunConfig) -> str:
    opt = f"sam rho={cfg.rho:g}" if cfg.optimizer == "sam" else cfg.optimizer
    return f"{cfg.workload} {opt} w{format_width(cfg.width)} s{cfg.seed}"


def result_line(status: str, cfg: RunConfig, summary: dict[str, Any], msg: str, wall: float) -> str:
    target = summary.get("target")
    metric = "".join(
        f"{split}/{target} {v:.5g}  "
        for split in ("val", "test")
        if (v := summary.get(f"best/{split}_{target}")) is not None
    )
    tail = f"  {msg}" if msg and status != "done" else ""
    return f"{status:<8} {run_label(cfg)}  {metric}{wall:.1f}s{tail}"


def record_failure(store: Store, cfg: RunConfig, error: str, ex: Execution) -> None:
    """Mark a run ``failed`` with ``error`` unless it recorded a finished outcome itself (the
    loop records its own exceptions; this is for deaths and failures before the loop)."""
    row = store.get_run(cfg.run_id)
    if (row is not None and row["status"] in FINISHED) or held_by_other(store, cfg.run_id):
        return  # a live process (another sweep, a run.py) is training it: not ours to close
    if row is None:  # died before its loop recorded it: the model was never built
        record_start(store, cfg, ex, get_spec(cfg.workload).domain, None)
    store.finish_run(cfg.run_id, "failed", error=error, last_step=row and row["last_step"])


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        return f"worker process killed by {signal.Signals(-code).name}"
    return f"worker process exited with code {code}"


# ---------------------------------------------------------------------------- local executor
Result = tuple[str, dict[str, Any], str]  # (status, summary, message) of one run


def _train_group(
    conn: Connection,
    cfg_dicts: list[dict[str, Any]],
    store_path: str,
    data_root: str,
    ex: Execution,
    threads: int,
) -> None:
    """A worker process: train one run, or a seed group as one seed ensemble (``train_seeds``),
    into the store; send back one (status, summary, message) per run, in the group's order."""
    torch.set_num_threads(threads)
    parent = mp.parent_process()
    if parent is not None:  # die with the driver, leaving our runs resumable (like a kill)
        threading.Thread(target=lambda: (wait([parent.sentinel]), os._exit(1)), daemon=True).start()
    cfgs = [RunConfig.from_dict(d) for d in cfg_dicts]
    store = Store(store_path)
    try:
        workload = workload_for_run(cfgs[0])  # the group differs only in seeds: one workload
        workload.setup_data(Path(data_root), torch.device(ex.device))
        if len(cfgs) == 1:
            outs = [train_run(workload, cfgs[0], store, ex)]
        else:  # leased per seed; done seeds skipped, killed ones resumed alone
            outs = train_seeds(workload, cfgs, store, ex)
        conn.send([(out.status, out.summary, out.message) for out in outs])
    except KeyboardInterrupt:  # the loop stored the runs interrupted; the driver says so
        return
    except StoreError as exc:  # disk full: the driver stops the sweep and says so
        conn.send([("store-error", {}, str(exc))] * len(cfgs))
    except Exception as exc:  # before the loop: config drift, missing data
        error = f"{type(exc).__name__}: {exc}"
        for cfg in cfgs:
            record_failure(store, cfg, error, ex)
        conn.send([("failed", {}, error)] * len(cfgs))


def run_local(
    groups: list[list[RunConfig]],
    store: Store,
    ex: Execution,
    data_root: Path,
    n_workers: int,
    report: Any,
    threads: int | None = None,
) -> None:
    """Train ``groups`` in order, each in its own spawned process, at most ``n_workers`` at a
    time (CleanRL's benchmark utility, with processes instead of shell commands: a custom
    driver's registered workloads reach the workers). A group is one run, or runs that differ
    only in their seed, trained as one seed ensemble (``seed_groups``). ``report(status, cfg,
    summary, message, wall)`` is called in the driver for each run as its group ends (a group's
    wall time is shared among its runs). A process that dies without a result has its runs
    recorded ``failed`` with its exit reason, and the sweep goes on."""
    ctx = mp.get_context("spawn")  # fork after torch (and CUDA) initialised is unsafe
    n_gpus = torch.cuda.device_count() if ex.device == "cuda" else 0
    threads = worker_threads(threads, n_workers)
    pending = list(reversed(groups))
    running: dict[int, tuple[Any, Connection, list[RunConfig], float]] = {}  # slot -> its group
    try:
        while pending or running:
            for slot in range(n_workers):
                while slot not in running and pending:
                    group = _still_to_train(pending.pop(), store, report)
                    if not group:  # finished or held by another invocation: no process
                        continue
                    device = f"cuda:{slot % n_gpus}" if n_gpus else ex.device
                    recv, send = ctx.Pipe(duplex=False)
                    args = (send, [c.to_dict() for c in group], str(store.path), str(data_root))
                    proc = ctx.Process(
                        target=_train_group,
                        args=(*args, _replace_device(ex, device), threads),
                        daemon=True,
                    )
                    proc.start()
                    send.close()
                    running[slot] = (proc, recv, group, time.perf_counter())
            if not running:
                continue
            ready = wait(
                [c for _, c, *_ in running.values()] + [p.sentinel for p, *_ in running.values()]
            )
            for slot, (proc, recv, group, t0) in list(running.items()):
                if recv in ready or proc.sentinel in ready:
                    del running[slot]
                    _collect(proc, recv, group, time.perf_counter() - t0, store, ex, report)
    finally:
        for proc, *_ in running.values():
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()


def _still_to_train(group: list[RunConfig], store: Store, report: Any) -> list[RunConfig]:
    """The runs of ``group`` that still need a worker now: one finished meanwhile, or held by a
    live other process (another sweep driver's worker, a run.py), is reported ``skipped``
    without spawning one (the worker's lease would skip it as well, after seconds of imports)."""
    left = []
    for cfg in group:
        row = store.get_run(cfg.run_id)
        if row is not None and row["status"] in FINISHED:
            report("skipped", cfg, row["summary"] or {}, f"already {row['status']}", 0.0)
        elif lease := held_by_other(store, cfg.run_id):
            who = f"{lease['host']} pid {lease['pid']}"
            report("skipped", cfg, {}, f"being trained by {who}; skipped", 0.0)
        else:
            left.append(cfg)
    return left


def _collect(
    proc: Any,
    recv: Connection,
    group: list[RunConfig],
    wall: float,
    store: Store,
    ex: Execution,
    report: Any,
) -> None:
    """A worker's results, or its death recorded as the failure of each of its runs."""
    try:
        results: list[Result] | None = recv.recv() if recv.poll() else None
    except (EOFError, OSError):
        results = None
    proc.join(timeout=30)
    if proc.is_alive():  # a result sent and the process hangs, or a pipe broke: not trusted
        proc.kill()
        proc.join()
    share = wall / len(group)  # as the ensemble stores time/wall_s: its share of the worker
    if results is None or len(results) != len(group):
        error = _exit_reason(proc.exitcode)
        for cfg in group:
            record_failure(store, cfg, error, ex)
            report("failed", cfg, {}, error, share)
        return
    for cfg, (status, summary, message) in zip(group, results):
        if status == "store-error":
            raise StoreError(message)
        report(status, cfg, summary, message, share)


def _replace_device(ex: Execution, device: str) -> Execution:
    return dataclasses.replace(ex, device=device, progress=False, verbose=False)


# ------------------------------------------------------------------------------ ray executor
def ray_train(cfg_dict: dict[str, Any], data_root: str, device: str) -> dict[str, Any]:
    """One run in a Ray task: train into a private store, return its run row and metrics."""
    cfg, t0 = RunConfig.from_dict(cfg_dict), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sam-sweep-") as tmp:
        ex = Execution(device=device, results_dir=Path(tmp), progress=False)
        store = Store(Path(tmp) / "runs.sqlite")
        try:
            workload = workload_for_run(cfg)
            workload.setup_data(Path(data_root), torch.device(device))
            train_run(workload, cfg, store, ex)
        except Exception as exc:
            record_failure(store, cfg, f"{type(exc).__name__}: {exc}", ex)
        row, metrics = store.get_run(cfg.run_id), store.metrics(cfg.run_id)
        store.close()
    return {"run": row, "metrics": metrics, "wall": time.perf_counter() - t0}


def run_ray(configs, store: Store, ex: Execution, data_root: Path, report):
    """Train ``configs`` as Ray tasks, one task per run (seeds are never grouped into a seed
    ensemble here: a task's store is private and returns one run); the driver alone writes
    the store. The driver leases every run it submits (heartbeats while it lives), so another
    sweep or run.py on the same results folder skips them, and takes them over if the driver
    dies; runs finished or held by a live other process are reported skipped, never submitted."""
    import ray

    left = _still_to_train(configs, store, report)
    with hold_lease(store, [c.run_id for c in left]) as ids:
        held = set(ids)
        for cfg in left:
            if cfg.run_id not in held:
                report("skipped", cfg, {}, "claimed by another invocation meanwhile", 0.0)
        _run_ray_tasks([c for c in left if c.run_id in held], store, ex, data_root, report, ray)


def _run_ray_tasks(configs, store: Store, ex: Execution, data_root: Path, report, ray) -> None:
    remote = ray.remote(ray_train).options(
        max_retries=0,  # a run that kills its worker is recorded failed, not retried
        **({"num_gpus": 1} if ex.device == "cuda" else {"num_cpus": 1}),
    )
    device = "cuda" if ex.device == "cuda" else "cpu"  # Ray sets CUDA_VISIBLE_DEVICES per task
    refs = {
        remote.remote(c.to_dict(), str(data_root), device): (c, time.perf_counter())
        for c in configs
    }
    while refs:
        [ref], _ = ray.wait(list(refs), num_returns=1)
        cfg, t0 = refs.pop(ref)
        wall = time.perf_counter() - t0
        try:
            result = ray.get(ref)
        except Exception as exc:  # the task's process died (segfault, OOM kill, os._exit)
            error = f"ray task died: {type(exc).__name__}: {str(exc).splitlines()[0]}"
            record_failure(store, cfg, error, ex)
            report("failed", cfg, {}, error, wall)
            continue
        store.import_run(result["run"], result["metrics"])
        run = result["run"]
        report(run["status"], cfg, run["summary"] or {}, run["error"] or "", result["wall"])
