"""Train one workload at one or more widths, with its base optimizer and/or SAM, and store it.

    python runners/run.py --domain synthetic --width 1x,4x,10x --optimizer both --seeds 0,1,2
    python runners/run.py --domain graph --width 4x
    python runners/run.py --list [--format json]
    python runners/run.py --workload synthetic-regression --preset smoke --num_epochs=3
    python runners/run.py --workload mnist-mlp --optimizer sam --sam-start 0,0.5,0.875

Workload config fields are overridden with ``--key=value`` (checked against the workload's
config dataclass; ``--list-config`` shows them). Every run is stored in
``<results>/runs.sqlite`` keyed by its full config: a done run is skipped, a killed one resumes.
Bad input exits with code 2 and one line on stderr, before anything is written.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

from domains import (
    ConfigError,
    MissingDataError,
    SizedByData,
    UnknownWorkloadError,
    Workload,
    create_workload,
    default_workload,
    domain_names,
    get_spec,
    list_workloads,
    resolve_data_root,
)
from results.store import Store, StoreError
from runners.engine.cli import (
    DEFAULT_RESULTS,
    Parser,
    UsageError,
    add_domains_path_option,
    add_no_memory_check_option,
    add_run_options,
    register_domains_path,
    results_folder,
    run_guarded,
    run_option_values,
)
from runners.engine.config import OPTIMIZER_CHOICES, RunConfig
from runners.engine.measure import MeasureError, MeasureSettings, measure_run
from runners.engine.memory import check_memory
from runners.engine.plan import PlanError, check_widths, expand_grid
from runners.engine.train import Execution, RunOutcome, train_run
from runners.engine.train_ensemble import can_use_seed_ensemble, train_seeds
from samcore import WidthError, count_params, format_width, parse_widths


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="run.py",
        allow_abbrev=False,
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--domain", help=f"one of: {', '.join(domain_names())}")
    p.add_argument("--workload", help="workload name (default: the domain's default workload)")
    p.add_argument("--width", default="1x", help="'4x', '0.25x,1x,4x' or 'all' (default 1x)")
    p.add_argument(
        "--optimizer",
        default="both",
        choices=OPTIMIZER_CHOICES,
        help="base = the workload's base optimizer; both = base and SAM (default)",
    )
    p.add_argument("--rho", default=None, help="SAM radius, or a comma list (default: workload's)")
    add_run_options(p)
    p.add_argument("--seeds", default="0", help="comma list, e.g. 0,1,2 (default 0)")
    p.add_argument(
        "--preset",
        default=None,
        help="workload preset: smoke | quick | paper | ... (default quick; paper for --list)",
    )
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default cpu)")
    p.add_argument(
        "--data-root",
        default=None,
        help="data sets folder (default: $SAM_DATA, else ~/.cache/sam-overparam)",
    )
    p.add_argument(
        "--results",
        default=str(DEFAULT_RESULTS),
        help=f"results folder (default {DEFAULT_RESULTS}/)",
    )
    p.add_argument(
        "--no-weight-decay",
        action="store_true",
        help="same as --weight_decay=0 (the paper's regularization ablation)",
    )
    p.add_argument("--list", action="store_true", help="list workloads, widths, parameter counts")
    p.add_argument("--list-config", action="store_true", help="print the resolved workload config")
    p.add_argument(
        "--format", default="text", choices=("text", "json"), help="--list output format"
    )
    p.add_argument(
        "--measure-sharpness",
        action="store_true",
        help="after each run, store its default sharpness measures (runners/sharpness.py)",
    )
    p.add_argument(
        "--channels-last",
        action="store_true",
        help="channels_last (NHWC) memory format for conv models (execution only, not hashed)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the model for training steps (execution only, not hashed)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="write a run's checkpoint at an evaluation only if this many seconds passed since "
        "its last one; the last epoch's is always written (default 0: at every evaluation; "
        "a kill repeats at most this much training; execution only, not hashed)",
    )
    p.add_argument(
        "--no-seed-ensemble",
        action="store_true",
        help="train --seeds one after another even where the workload allows training them "
        "at once as one vmapped model (same results up to float rounding)",
    )
    add_no_memory_check_option(p)
    add_domains_path_option(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="one line per evaluation")
    return p


def _parse_overrides(extra: list[str]) -> dict[str, str]:
    """``--num_epochs=3`` / ``--num-epochs 3`` -> {"num_epochs": "3"}."""
    out: dict[str, str] = {}
    i = 0
    while i < len(extra):
        tok = extra[i]
        if not tok.startswith("--") or len(tok) < 3:
            raise UsageError(
                f"unexpected argument {tok!r}; workload overrides look like --key=value"
            )
        key, eq, value = tok[2:].partition("=")
        if not eq:
            if i + 1 >= len(extra) or extra[i + 1].startswith("--"):
                raise UsageError(f"override --{key} needs a value (--{key}=VALUE)")
            value, i = extra[i + 1], i + 1
        out[key.replace("-", "_")] = value
        i += 1
    return out


def _parse_floats(text: str, what: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise UsageError(
            f"{what} must be a number or comma list of numbers, got {text!r}"
        ) from None
    return values


def _parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        raise UsageError(f"--seeds must be a comma list of integers, got {text!r}") from None
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds must be distinct non-negative integers, got {text!r}")
    return seeds


def _check_device(device: str) -> None:
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UsageError(f"--device must be cpu, cuda or cuda:N, got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: no CUDA device is available on this machine")
    if dev.type not in ("cpu", "cuda"):
        raise UsageError(f"--device must be cpu, cuda or cuda:N, got {device!r}")


def _check_results_dir(results_dir: Path) -> None:
    """Refuse a results folder that cannot hold the store, without creating anything."""
    db = results_dir / "runs.sqlite"
    if db.exists() and not db.is_file():
        raise UsageError(f"--results {results_dir}: {db} exists and is not a file")
    existing = results_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # the first ancestor that exists is where mkdir starts
    if not existing.is_dir():
        raise UsageError(f"--results {results_dir}: {existing} is a file, expected a folder")
    if not os.access(existing, os.W_OK | os.X_OK) or (db.exists() and not os.access(db, os.W_OK)):
        raise UsageError(f"--results {results_dir}: {existing} is not writable")


def _select_workloads(args: argparse.Namespace) -> list[str]:
    if args.domain is not None and args.domain not in domain_names():
        raise UsageError(
            f"unknown domain {args.domain!r}; expected one of {', '.join(domain_names())}"
        )
    if args.workload is not None:
        spec = get_spec(args.workload)
        if args.domain is not None and spec.domain != args.domain:
            raise UsageError(
                f"workload {args.workload!r} is in domain {spec.domain!r}, not {args.domain!r}"
            )
        return [args.workload]
    if args.list:
        return list_workloads(domain=args.domain)
    if args.domain is None:
        raise UsageError("give --domain or --workload (or --list to see them)")
    return [default_workload(args.domain)]


def _param_count(workload: Workload, width: float) -> int | None:
    """None for a model sized by its data (e.g. a vocabulary taken from the train split)."""
    try:
        with torch.device("meta"):  # counts without allocating (178M-parameter models too)
            return count_params(workload.build_model(width))
    except SizedByData:
        return None
    except (NotImplementedError, RuntimeError):
        return count_params(workload.build_model(width))


def _list(names: list[str], preset: str | None, overrides: dict[str, str], fmt: str) -> None:
    rows: list[dict[str, Any]] = []
    for name in names:
        spec = get_spec(name)
        chosen = preset or ("paper" if "paper" in spec.presets else spec.presets[0])
        workload = create_workload(name, chosen, **overrides)
        for w in workload.widths:
            rows.append(
                {
                    "domain": spec.domain,
                    "workload": name,
                    "width": format_width(w),
                    "params": _param_count(workload, w),
                }
            )
    if fmt == "json":
        print(json.dumps(rows))
        return
    print(f"{'domain':<10} {'workload':<28} {'width':>7} {'params':>14}")
    for r in rows:
        params = "from data" if r["params"] is None else f"{r['params']:,}"
        print(f"{r['domain']:<10} {r['workload']:<28} {r['width']:>7} {params:>14}")


def _plan(workload: Workload, args: argparse.Namespace, preset: str) -> list[RunConfig]:
    """The grid: widths x optimizers x rhos x seeds, as RunConfigs (validated)."""
    widths = parse_widths(args.width, workload.widths)
    try:  # fail now, not mid-grid, on a width the model cannot take
        check_widths(workload, widths)
    except PlanError as exc:
        raise UsageError(f"--{exc}") from None
    rhos = _parse_floats(args.rho, "--rho") if args.rho is not None else [workload.config.rho]
    if any(not (r >= 0) or r == float("inf") for r in rhos):
        raise UsageError(f"--rho must be >= 0, got {args.rho}")
    seeds = _parse_seeds(args.seeds)
    options = run_option_values(args)
    sam_starts, sam_end = options["sam_start"], options["sam_end"]
    if any(not (0 <= s < sam_end <= 1) for s in sam_starts):
        raise UsageError(
            f"need 0 <= --sam-start < --sam-end <= 1, got --sam-start {args.sam_start} "
            f"--sam-end {sam_end:g}"
        )
    late_phase = sam_starts != [0.0] or sam_end != 1.0
    if late_phase and (args.optimizer not in ("sam", "both") or workload.owns_loop):
        raise UsageError(
            "--sam-start/--sam-end need SAM runs (--optimizer sam or both) of a workload "
            "trained by the runner's loop"
        )
    try:
        return expand_grid(
            workload,
            preset,
            widths=widths,
            optimizers=[args.optimizer],
            rhos=rhos,
            seeds=seeds,
            **options,
        )
    except PlanError as exc:
        raise UsageError(str(exc)) from None


def _seed_groups(
    workload: Workload, plan: list[RunConfig], ensemble: bool
) -> dict[str, list[RunConfig]]:
    """run_id -> the runs trained together with it: consecutive runs that differ only in
    their seed where a seed ensemble can train them at once, else the run alone."""
    groups: list[list[RunConfig]] = []
    for cfg in plan:
        prev = groups[-1][0] if groups else None
        same_but_seed = prev is not None and dataclasses.replace(prev, seed=cfg.seed) == cfg
        if ensemble and same_but_seed and can_use_seed_ensemble(workload, cfg):
            groups[-1].append(cfg)
        else:
            groups.append([cfg])
    return {cfg.run_id: group for group in groups for cfg in group}


def _outcome_line(cfg: RunConfig, out: RunOutcome, target: Any) -> str:
    """One line per run: status, run, parameters, metrics at the best epoch, time, id."""
    s = out.summary
    opt = f"sam rho={cfg.rho:g}" if cfg.optimizer == "sam" else cfg.optimizer
    if (cfg.sam_start, cfg.sam_end) != (0.0, 1.0):
        opt += f" from {cfg.sam_start:g} to {cfg.sam_end:g}"
    val, test = s.get(f"best/val_{target.name}"), s.get(f"best/test_{target.name}")
    final_test = s.get(f"final/test_{target.name}")
    metrics = (
        (
            f"val/{target.name} {val:.5g}  test/{target.name} {test:.5g}  "
            f"(best epoch {s.get('best/epoch')}"
            + ("" if final_test is None else f"; final test {final_test:.5g}")
            + ")"
        )
        if val is not None
        else ""
    )
    wall = s.get("wall_time_s")
    return (
        f"{out.status:<8} {cfg.workload} {opt} w{format_width(cfg.width)} s{cfg.seed}  "
        f"params {s.get('n_params', 0):,}  {metrics}  "
        f"{'' if wall is None else f'{wall:.1f}s'}  id {out.run_id}"
        f"{'  ' + out.message if out.message else ''}"
    )


def _measure_sharpness(
    store: Store, results_dir: Path, run_id: str, device: str, workload: Workload
) -> None:
    """--measure-sharpness: the default measures of a finished run, stored and printed."""
    try:
        values = measure_run(
            store, results_dir, run_id, MeasureSettings(), device, workload=workload
        )
        print("  sharpness: " + "  ".join(f"{k} {v:.4g}" for k, v in values.items()))
    except MeasureError as exc:
        print(f"  sharpness not measured: {exc}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    return run_guarded("run.py", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    try:
        register_domains_path(argv)  # before the parser: its help lists the domains
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        overrides = _parse_overrides(extra)
        if args.no_weight_decay:
            if overrides.get("weight_decay", "0") not in ("0", "0.0"):
                raise UsageError("--no-weight-decay contradicts --weight_decay")
            overrides["weight_decay"] = "0"
        names = _select_workloads(args)
        if args.list:
            _list(names, args.preset, overrides, args.format)
            return 0
        preset = args.preset or "quick"
        workload = create_workload(names[0], preset, **overrides)
        if args.list_config:
            print(json.dumps(dataclasses.asdict(workload.config), indent=2))
            return 0
        plan = _plan(workload, args, preset)
        if args.measure_sharpness and workload.owns_loop:
            raise UsageError(f"--measure-sharpness: {workload.name} has no loss to measure (SB3)")
        _check_device(args.device)
        if not args.no_memory_check:  # before the store and the data: 1e9x must not allocate
            groups = _seed_groups(workload, plan, ensemble=not args.no_seed_ensemble)
            ensemble_size = max(len(g) for g in groups.values())  # seeds as one model
            check_memory(workload, sorted({cfg.width for cfg in plan}), ensemble_size)
        results_dir = results_folder(args.results)
        _check_results_dir(results_dir)  # before loading data, which can take minutes
        data_root = resolve_data_root(args.data_root)
        workload.setup_data(data_root, torch.device(args.device))
        store = Store(results_dir / "runs.sqlite")  # only now: bad data creates no store
    except (
        UsageError,
        ConfigError,
        UnknownWorkloadError,
        WidthError,
        MissingDataError,
        StoreError,
        ValueError,
    ) as exc:
        # one line whatever the input held (a value with a newline would split it)
        message = str(exc).replace("\r", "\\r").replace("\n", "\\n")
        print(f"run.py: error: {message}", file=sys.stderr)
        return 2

    print(
        f"{workload.name} [{preset}] {len(plan)} run(s); config: "
        f"{json.dumps(dataclasses.asdict(workload.config), sort_keys=True)}"
    )
    ex = Execution(
        device=args.device,
        results_dir=results_dir,
        progress=not args.no_progress,
        verbose=args.verbose,
        channels_last=args.channels_last,
        compile=args.compile,
        checkpoint_every_s=args.checkpoint_every,
    )
    failures = 0
    target = workload.target
    groups = _seed_groups(workload, plan, ensemble=not args.no_seed_ensemble)
    outcomes: dict[str, RunOutcome] = {}
    for cfg in plan:
        if cfg.run_id not in outcomes:  # seeds of one run may train at once (seed ensemble)
            group = groups[cfg.run_id]
            if len(group) == 1:
                outs = [train_run(workload, cfg, store, ex)]
            else:
                outs = train_seeds(workload, group, store, ex)
            outcomes.update(zip([c.run_id for c in group], outs))
        out = outcomes[cfg.run_id]
        print(_outcome_line(cfg, out, target))
        failures += out.status == "failed"
        if args.measure_sharpness and out.status in ("done", "skipped"):
            _measure_sharpness(store, results_dir, out.run_id, args.device, workload)
    print()
    # imported here: results.tables pulls in scipy (~0.8 s of CPU), which no run needs
    from results.tables import workload_table

    print(workload_table(store, workload.name))
    store.close()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
