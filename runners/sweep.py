"""Run a sweep spec: every config of the grid that is not finished yet, in parallel.

    python runners/sweep.py sweeps/quick.yaml --workers 2
    python runners/sweep.py sweeps/smoke.yaml --dry-run
    python runners/sweep.py sweeps/paper.yaml --device cuda --executor ray --ray-address auto

The spec format is in ``runners/engine/sweep_spec.py``. Every run lands in ``<results>/runs.sqlite``
keyed by its config hash, as with ``runners/run.py``: a run whose row is ``done`` or
``diverged`` (a finished, deterministic outcome) is skipped, so rerunning a finished sweep does
nothing; a ``running`` (killed) or ``failed`` row is run again and resumes from its checkpoint.

Executors:
  local  each run in its own spawned process, at most N at a time (default one per CUDA device
         with --device cuda, else half the cores), torch threads = --threads, else
         $OMP_NUM_THREADS, else cores // N; CleanRL's benchmark utility in processes. Runs that
         differ only in their seed are one task where the workload allows a seed ensemble
         (as run.py's --seeds: one process trains them as one vmapped model, same results up
         to float rounding; --no-seed-ensemble trains each alone). A run is rebuilt from its
         RunConfig alone (``workload_for_run``) and loads its own data (caches are built
         once, under a lock). Workers write the one store directly (SQLite WAL). A run
         that raises or diverges is recorded by the loop and the sweep goes on; a worker that
         dies (segfault, os._exit, OOM kill) has its run recorded ``failed`` with the exit code
         by the driver. Workers exit with the driver, so a killed sweep leaves its runs
         ``running`` with their checkpoints, and the next invocation resumes them.
  ray    each run is one Ray task (``num_gpus=1`` with --device cuda, else ``num_cpus=1``;
         per run, never a seed ensemble, whatever --no-seed-ensemble says) on
         ``ray.init(address=--ray-address)``: a running cluster (``auto`` or ``ray://...``)
         or, without an address, a local Ray. The task trains into a private store in its own
         temporary folder and returns the run row and metric rows; the driver writes them into
         the one store. Checkpoints are local to a task: a killed Ray run starts over. Every
         node needs this package installed and the data sets at --data-root.

Exit status: 0 when every run is done or diverged, 1 if any failed, 2 on bad input (one line
on stderr, nothing written).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import torch

from domains import get_spec, resolve_data_root
from results.store import Store, StoreError
from runners.engine.cli import (
    DEFAULT_RESULTS,
    Parser,
    UsageError,
    add_domains_path_option,
    add_no_memory_check_option,
    register_domains_path,
    results_folder,
    run_guarded,
)
from runners.engine.config import RunConfig, workload_for_run
from runners.engine.lease import held_by_other, hold_lease
from runners.engine.memory import check_memory
from runners.engine.plan import seed_groups
from runners.engine.sweep_options import positive_int, run_details, worker_threads
from runners.engine.sweep_spec import SpecError, Sweep, SweepPlan, open_sweep
from runners.engine.train import Execution, record_start, train_run
from runners.engine.train_ensemble import can_use_seed_ensemble, train_seeds
from samcore import format_width

FINISHED = ("done", "diverged")  # outcomes a rerun would only reproduce: skipped
# --dry-run lists at most this many runs, then a count of the rest; above it a warning says
# the sweep is that large (a 10^6-run grid printed nothing for minutes and then everything).
DRY_RUN_SHOWN = 10_000
# A grid larger than this is not expanded by --dry-run: it is counted by multiplication and
# its first runs are listed as they are expanded (memory and time bounded by what is shown).
DRY_RUN_EXACT = 10_000
DRY_RUN_BLOCK = 1_000  # streamed listing: at most this many lines per block, the first 10
# (the key=value details shown on a line are those that vary within its block)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="sweep.py",
        allow_abbrev=False,
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("spec", help="sweep spec YAML (e.g. sweeps/quick.yaml)")
    add_domains_path_option(p)
    add_no_memory_check_option(p)
    p.add_argument(
        "--results",
        default=str(DEFAULT_RESULTS),
        help=f"results folder (default {DEFAULT_RESULTS}/)",
    )
    p.add_argument("--workers", type=int, default=None, help="local worker processes")
    p.add_argument("--executor", default="local", choices=("local", "ray"))
    p.add_argument("--ray-address", default=None, help="Ray cluster (default: a local Ray)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument(
        "--data-root",
        default=None,
        help="data sets folder (default: $SAM_DATA, else ~/.cache/sam-overparam)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (each run's grid values and non-default flags), run nothing",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="torch threads per local worker (default: $OMP_NUM_THREADS, else cores // workers)",
    )
    p.add_argument(
        "--no-seed-ensemble",
        action="store_true",
        help="local executor: train each seed in its own process even where the workload "
        "allows training a run's seeds at once as one vmapped model (same results up to "
        "float rounding)",
    )
    p.add_argument(
        "--rho-grid",
        nargs="?",
        const="paper",
        default=None,
        help="tune rho: replace every entry's rho by paper (the workload's grid; the default "
        "when the flag has no value), default, or 0.01,0.05; chosen per width on validation",
    )
    return p


# ---------------------------------------------------------------------------------- helpers
def _label(cfg: RunConfig) -> str:
    opt = f"sam rho={cfg.rho:g}" if cfg.optimizer == "sam" else cfg.optimizer
    return f"{cfg.workload} {opt} w{format_width(cfg.width)} s{cfg.seed}"


def _result_line(
    status: str, cfg: RunConfig, summary: dict[str, Any], msg: str, wall: float
) -> str:
    target = summary.get("target")
    metric = "".join(
        f"{split}/{target} {v:.5g}  "
        for split in ("val", "test")
        if (v := summary.get(f"best/{split}_{target}")) is not None
    )
    tail = f"  {msg}" if msg and status != "done" else ""
    return f"{status:<8} {_label(cfg)}  {metric}{wall:.1f}s{tail}"


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
    return Execution(device=device, results_dir=ex.results_dir, progress=False, verbose=False)


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


# -------------------------------------------------------------------------------------- main
def _statuses(path: Path, configs: list[RunConfig]) -> dict[str, str]:
    """Stored status of each config that has a row (read only; no file is created)."""
    if not path.exists():
        return {}
    with Store(path) as store:
        return {c.run_id: row["status"] for c in configs if (row := store.get_run(c.run_id))}


def _worker_count(args: argparse.Namespace, n_todo: int) -> int:
    """--workers, else one per CUDA device with --device cuda, else half the cores; at most
    one per run to do."""
    default = (
        torch.cuda.device_count() if args.device == "cuda" else max(1, (os.cpu_count() or 1) // 2)
    )
    return min(args.workers or default, max(n_todo, 1))


def _plan_line(
    name: str, n_runs: int, before: Counter[str], n_todo: int, n_workers: int, args: Any
) -> str:
    where = (
        f"ray ({args.ray_address or 'local'})"
        if args.executor == "ray"
        else f"{n_workers} worker(s)"
    )
    interrupted = before["running"] + before["interrupted"]
    return (
        f"sweep {name}: {n_runs} run(s); {before['done']} done, "
        f"{before['diverged']} diverged (skipped); {n_todo} to run "
        f"({before['new']} new, {interrupted} interrupted, {before['failed']} failed before) "
        f"on {where}, device {args.device}"
    )


class _Workloads:
    """Each workload config of a sweep built once (no data): ``workload_for_run`` memoized."""

    def __init__(self) -> None:
        self._built: dict[str, Any] = {}

    @staticmethod
    def key(cfg: RunConfig) -> str:
        wl = json.dumps(cfg.workload_config, sort_keys=True, default=str)
        return f"{cfg.workload}|{cfg.preset}|{wl}"

    def __call__(self, cfg: RunConfig) -> Any:
        key = self.key(cfg)
        if key not in self._built:
            self._built[key] = workload_for_run(cfg)
        return self._built[key]


def _tasks(
    configs: list[RunConfig], ensemble: bool, workloads: _Workloads
) -> list[list[RunConfig]]:
    """The local executor's tasks: seed groups trained as one seed ensemble where the workload
    and the run allow it (``can_use_seed_ensemble``) and ``ensemble``, else single runs."""
    if not ensemble:
        return [[c] for c in configs]
    return seed_groups(configs, lambda c: can_use_seed_ensemble(workloads(c), c))


def _check_memory(tasks: list[list[RunConfig]], workloads: _Workloads) -> None:
    """Each workload config's largest width, times its largest seed ensemble, against the
    machine's memory (MemoryCheckError), before the store is created."""
    by_config: dict[str, tuple[RunConfig, set[float], int]] = {}
    for group in tasks:
        first = group[0]
        cfg, widths, size = by_config.get(_Workloads.key(first), (first, set(), 1))
        by_config[_Workloads.key(first)] = (cfg, widths | {first.width}, max(size, len(group)))
    for cfg, widths, size in by_config.values():
        check_memory(workloads(cfg), sorted(widths), ensemble_size=size)


def _print_dry_run(configs: list[RunConfig], todo: list[RunConfig], status: dict) -> None:
    """One line per run to do, at most DRY_RUN_SHOWN of them, then how many were not shown."""
    if len(todo) > DRY_RUN_SHOWN:
        print(
            f"sweep.py: warning: {len(todo):,} runs to do; listing the first {DRY_RUN_SHOWN:,}",
            file=sys.stderr,
            flush=True,
        )
    details = run_details(configs)
    for c in todo[:DRY_RUN_SHOWN]:
        print(f"  {status.get(c.run_id, 'new'):<8} {_label(c)}{details[c.run_id]}  id {c.run_id}")
    if len(todo) > DRY_RUN_SHOWN:
        print(f"  ... {len(todo) - DRY_RUN_SHOWN:,} more run(s) not shown")


def _stream_dry_run(plan: SweepPlan, total: int, db: Path, args: argparse.Namespace) -> int:
    """--dry-run of a grid over DRY_RUN_EXACT runs: its count (by multiplication), then its
    first DRY_RUN_SHOWN runs not finished, listed as the grid is expanded."""
    print(
        f"sweep.py: warning: {total:,} runs; listing the first {DRY_RUN_SHOWN:,} not finished",
        file=sys.stderr,
        flush=True,
    )
    print(
        f"sweep {plan.name}: {total:,} run(s) (counted, not expanded: a run two entries name "
        f"counts twice); device {args.device}; the first {DRY_RUN_SHOWN:,} not finished:",
        flush=True,
    )
    store = Store(db) if db.is_file() else None
    shown, block, size = 0, [], 10  # a small first block: the first lines come at once
    try:
        for cfg in plan:
            row = store.get_run(cfg.run_id) if store is not None else None
            status = row["status"] if row is not None else "new"
            if status in FINISHED:
                continue
            block.append((cfg, status))
            if len(block) == min(size, DRY_RUN_SHOWN - shown):
                shown += _print_block(block)
                block, size = [], min(size * 10, DRY_RUN_BLOCK)
                if shown >= DRY_RUN_SHOWN:
                    break
        shown += _print_block(block)
    finally:
        if store is not None:
            store.close()
    print(f"  ... at most {total - shown:,} more run(s) not shown")
    return 0


def _print_block(block: list[tuple[RunConfig, str]]) -> int:
    details = run_details([cfg for cfg, _ in block])
    for cfg, status in block:
        print(f"  {status:<8} {_label(cfg)}{details[cfg.run_id]}  id {cfg.run_id}")
    sys.stdout.flush()
    return len(block)


def main(argv: list[str] | None = None) -> int:
    return run_guarded("sweep.py", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    try:
        register_domains_path(argv)  # workers inherit it ($SAM_DOMAINS_PATH)
        args = build_parser().parse_args(argv)
        if args.workers is not None and args.workers < 1:
            raise UsageError(f"--workers must be >= 1, got {args.workers}")
        if args.ray_address and args.executor != "ray":
            raise UsageError("--ray-address needs --executor ray")
        if args.device == "cuda" and args.executor == "local" and not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is available on this machine")
        plan = open_sweep(args.spec, rho_grid=args.rho_grid)
        results_dir = results_folder(args.results)
        db = results_dir / "runs.sqlite"
        if args.dry_run and (total := plan.count()) > DRY_RUN_EXACT:
            return _stream_dry_run(plan, total, db, args)
        sweep = Sweep(plan.name, list(plan))
        status = _statuses(db, sweep.configs)
        todo = [c for c in sweep.configs if status.get(c.run_id) not in FINISHED]
        workloads = _Workloads()
        ensemble = args.executor == "local" and not args.no_seed_ensemble
        tasks = _tasks(todo, ensemble, workloads)
        if not args.no_memory_check and not args.dry_run:
            _check_memory(tasks, workloads)
    except (UsageError, SpecError, StoreError, ValueError) as exc:
        print(f"sweep.py: error: {exc}", file=sys.stderr)
        return 2

    before = Counter(status.get(c.run_id, "new") for c in sweep.configs)
    n_workers = _worker_count(args, len(tasks))
    print(_plan_line(sweep.name, len(sweep.configs), before, len(todo), n_workers, args))
    if len(tasks) < len(todo):
        n_groups = sum(len(g) > 1 for g in tasks)
        print(f"  {len(todo)} run(s) as {len(tasks)} task(s): {n_groups} seed ensemble(s)")
    if args.dry_run:
        _print_dry_run(sweep.configs, todo, status)
        return 0
    if not todo:
        print("nothing to run: every run of this sweep is finished")
        return 0

    own_ray = False
    try:
        if args.executor == "ray":
            own_ray = _init_ray(args)  # before the store: a cluster without GPUs writes nothing
        store = Store(db)
    except (UsageError, StoreError) as exc:
        if own_ray:
            import ray

            ray.shutdown()
        print(f"sweep.py: error: {exc}", file=sys.stderr)
        return 2
    ex = Execution(device=args.device, results_dir=results_dir, progress=False)
    data_root = resolve_data_root(args.data_root)
    counts: Counter[str] = Counter()
    t0 = time.perf_counter()

    def report(st: str, cfg: RunConfig, summary: dict, message: str, wall: float) -> None:
        counts[st] += 1
        n = f"[{sum(counts.values()):>{len(str(len(todo)))}}/{len(todo)}]"
        print(f"{n} {_result_line(st, cfg, summary, message, wall)}", flush=True)

    try:
        if args.executor == "ray":
            run_ray(todo, store, ex, data_root, report)
        else:
            run_local(tasks, store, ex, data_root, n_workers, report, args.threads)
    finally:
        store.close()
        if own_ray:
            import ray

            ray.shutdown()
    shown = ", ".join(
        f"{counts[s]} {s}" for s in ("done", "diverged", "failed", "skipped") if counts[s]
    )
    print(f"sweep {sweep.name}: {shown} in {time.perf_counter() - t0:.0f}s; store {db}")
    return 1 if counts["failed"] else 0


def _init_ray(args: argparse.Namespace) -> bool:
    import ray

    repo = str(Path(__file__).resolve().parents[1])
    env = {"PYTHONPATH": os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)}
    # a local Ray gets this checkout on its workers' path; a cluster's nodes bring their own
    ours = not ray.is_initialized()  # a caller (a test, a notebook) may have started it
    if ours:
        ray.init(
            address=args.ray_address,
            include_dashboard=False,
            runtime_env=None if args.ray_address else {"env_vars": env},
            log_to_driver=False,
        )
    if args.device == "cuda" and not ray.cluster_resources().get("GPU"):
        if ours:
            ray.shutdown()
        raise UsageError("--device cuda: the Ray cluster has no GPUs")
    return ours


if __name__ == "__main__":
    sys.exit(main())
