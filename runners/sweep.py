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
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from domains import resolve_data_root
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
from runners.engine.executors import FINISHED, result_line, run_label, run_local, run_ray
from runners.engine.memory import check_memory
from runners.engine.plan import seed_groups
from runners.engine.sweep_options import positive_int, run_details
from runners.engine.sweep_spec import SpecError, Sweep, SweepPlan, open_sweep
from runners.engine.train import Execution
from runners.engine.train_ensemble import can_use_seed_ensemble

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
        "--checkpoint-every",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="as run.py's: a run's checkpoint at an evaluation only if this many seconds passed "
        "since its last one, the last epoch's always (default 0: every evaluation; e.g. 60 "
        "saves Cora's 200 per-run checkpoints; execution only, not hashed)",
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
        print(
            f"  {status.get(c.run_id, 'new'):<8} {run_label(c)}{details[c.run_id]}  id {c.run_id}"
        )
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
        print(f"  {status:<8} {run_label(cfg)}{details[cfg.run_id]}  id {cfg.run_id}")
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
        if not 0 <= args.checkpoint_every < float("inf"):
            raise UsageError(
                f"--checkpoint-every must be seconds >= 0, got {args.checkpoint_every}"
            )
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
    ex = Execution(
        device=args.device,
        results_dir=results_dir,
        progress=False,
        checkpoint_every_s=args.checkpoint_every,
    )
    data_root = resolve_data_root(args.data_root)
    counts: Counter[str] = Counter()
    t0 = time.perf_counter()

    def report(st: str, cfg: RunConfig, summary: dict, message: str, wall: float) -> None:
        counts[st] += 1
        n = f"[{sum(counts.values()):>{len(str(len(todo)))}}/{len(todo)}]"
        print(f"{n} {result_line(st, cfg, summary, message, wall)}", flush=True)

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
