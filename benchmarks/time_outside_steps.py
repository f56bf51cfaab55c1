"""Where a run's wall time goes: training steps against everything else (issue 21).

Each workload runs once through ``runners/run.py`` in a fresh process, as a sweep runs it (one
process per run), with timers wrapped around the engine's parts by this script (the production
code has no timing hooks): imports (with the libraries a workload imports lazily,
LAZY_IMPORTS), data setup, training steps (``_train_epoch``, or for a workload that owns its
loop, ``fit`` minus its evaluations and store writes), evaluation (``evaluate_and_select`` /
SB3's ``evaluate_policy``), checkpoint writes, store calls, and the rest (model builds for the
plan check, the run row, the table printed at the end...).

    python benchmarks/time_outside_steps.py                     # the five evidence workloads
    python benchmarks/time_outside_steps.py --workloads planetoid-cora --optimizer sam
    python benchmarks/time_outside_steps.py --full-length --compare-test-every-epoch

The configurations are the evidence sweep's largest widths at the paper presets, shortened to
a few epochs (Cora keeps its 200 full-batch epochs: evaluation every epoch is its protocol);
``--full-length`` runs them as long as the sweep does. ``--compare-test-every-epoch`` measures
each one twice, side by side: as the loop runs (the test split only where validation improved
and at the last epoch) and with the test split at every evaluation, as before issue 21.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

# name -> run.py arguments: the largest evidence width at the paper preset with the evidence
# sweep's overrides (sweeps/cpu-evidence.yaml: the train-curve subsets), a few epochs
CONFIGS: dict[str, list[str]] = {
    "synthetic-regression": ["--width", "10x", "--num_epochs=5", "--train_eval_size=2048"],
    "mnist-mlp": ["--width", "4x", "--num_epochs=2", "--train_eval_size=2000"],
    "planetoid-cora": ["--width", "16x"],  # 200 epochs, one step and one evaluation each
    "sst2-lstm": [
        "--width",
        "0.625x",
        "--max_train_examples=4000",
        "--num_epochs=4",
        "--train_eval_examples=1024",
    ],
    "acrobot-ppo": [
        "--width",
        "4x",
        "--total_timesteps=20480",
        "--eval_freq=16384",
        "--eval_episodes=20",
    ],
}
# the evidence sweep's run lengths (sweeps/cpu-evidence.yaml), for --full-length
FULL_LENGTH: dict[str, list[str]] = {
    "synthetic-regression": ["--num_epochs=100"],
    "mnist-mlp": ["--num_epochs=20"],
    "planetoid-cora": [],
    "sst2-lstm": ["--num_epochs=32"],  # the second sst2 setup: 4,000 phrases
    "acrobot-ppo": ["--total_timesteps=102400"],
}
# libraries a workload's code imports inside its functions (PyG ~2 s, SB3 ~1 s): imported in
# the imports phase here, so that their import is not counted as the loop's "other" time
# (Cora) or as its training steps (Acrobot's fit)
LAZY_IMPORTS: dict[str, tuple[str, ...]] = {
    "planetoid-cora": (
        "torch_geometric.nn",
        "torch_geometric.datasets",
        "torch_geometric.transforms",
    ),
    "acrobot-ppo": ("gymnasium", "stable_baselines3", "stable_baselines3.common.evaluation"),
}
PARTS = ("imports", "data setup", "train steps", "evaluation", "checkpoints", "store", "other")


class Timers:
    """Seconds per part; a call nested inside a timed call is not counted twice."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._depth = 0

    def wrap(self, part: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self._depth:
                return fn(*args, **kwargs)
            self._depth += 1
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[part] += time.perf_counter() - t0
                self._depth -= 1

        return timed


def _with(args: list[str], overrides: list[str]) -> list[str]:
    """``args``, then ``overrides``; each ``--key=value`` override replaces that key's entry."""
    keys = {o.split("=", 1)[0] for o in overrides if "=" in o}
    return [a for a in args if "=" not in a or a.split("=", 1)[0] not in keys] + overrides


def _child(run_args: list[str], threads: int, test_every_epoch: bool) -> dict[str, float]:
    """One run in this process, timed by part (the parent starts a process per workload)."""
    t_start = time.perf_counter()
    import torch
    import torch._dynamo  # noqa: F401  (torch.optim imports it at the first optimizer)

    torch.set_num_threads(threads)
    import results.store
    import results.tables  # noqa: F401  (run.py imports it for its final table: scipy)
    import runners.engine.evaluation as evaluation
    import runners.engine.train as train
    import runners.run as run

    workload_name = run_args[run_args.index("--workload") + 1]
    for module in LAZY_IMPORTS.get(workload_name, ()):
        importlib.import_module(module)
    timers = Timers()
    timers.seconds["imports"] = time.perf_counter() - t_start

    # a fit (owned loop) counts as training steps; its evaluations and store calls are
    # taken out below, because the inner timers see them while the outer one runs
    fit_seconds = {"total": 0.0}
    real_create = run.create_workload

    def create_workload(*args: Any, **kwargs: Any) -> Any:
        workload = real_create(*args, **kwargs)
        workload.setup_data = timers.wrap("data setup", workload.setup_data)
        if workload.owns_loop:
            real_fit = workload.fit

            def fit(request: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return real_fit(request)
                finally:
                    fit_seconds["total"] += time.perf_counter() - t0

            workload.fit = fit
        return workload

    run.create_workload = create_workload
    if test_every_epoch:  # the loop as it was: every evaluation measures every split
        evaluation._takes_splits = lambda workload: False
    train._train_epoch = timers.wrap("train steps", train._train_epoch)
    train.evaluate_and_select = timers.wrap("evaluation", train.evaluate_and_select)
    train.save_checkpoint = timers.wrap("checkpoints", train.save_checkpoint)
    for name, attr in list(vars(results.store.Store).items()):
        if callable(attr) and (not name.startswith("_") or name == "__init__"):
            setattr(results.store.Store, name, timers.wrap("store", attr))
    try:
        import stable_baselines3.common.evaluation as sb3_eval

        sb3_eval.evaluate_policy = timers.wrap("evaluation", sb3_eval.evaluate_policy)
    except ImportError:
        pass

    with tempfile.TemporaryDirectory() as results_dir:
        t0 = time.perf_counter()
        code = run.main([*run_args, "--results", results_dir, "--no-progress"])
        in_process = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"run.py exited with {code}")
    s = timers.seconds
    if fit_seconds["total"]:
        s["train steps"] = fit_seconds["total"] - s["evaluation"] - s["store"]
    s["other"] = in_process - sum(s[p] for p in PARTS if p not in ("imports", "other"))
    return dict(s)


def _measure(
    name: str,
    optimizer: str,
    threads: int,
    extra: list[str],
    *,
    full_length: bool = False,
    test_every_epoch: bool = False,
) -> dict[str, float]:
    config = _with(CONFIGS[name], FULL_LENGTH[name]) if full_length else CONFIGS[name]
    run_args = ["--workload", name, "--preset", "paper", "--optimizer", optimizer]
    run_args += ["--no-memory-check", *_with(config, extra)]  # extra: run.py's own flags
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(REPO))
    child = [sys.executable, __file__, "--child", json.dumps(run_args), "--threads", str(threads)]
    proc = subprocess.run(
        child + (["--test-every-epoch"] if test_every_epoch else []),
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{name}: the timed run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """One line per workload: seconds per part, and the share outside training steps, of the
    run (imports excluded) and of the whole process."""
    head = f"{'workload':<42}" + "".join(f"{p:>12}" for p in PARTS)
    head += f"{'total':>9}{'outside':>9}{'w/ imports':>11}"
    lines = [head]
    for name, s in rows.items():
        total = sum(s.get(p, 0.0) for p in PARTS)
        run_total = total - s.get("imports", 0.0)
        steps = s.get("train steps", 0.0)
        lines.append(
            f"{name:<42}"
            + "".join(f"{s.get(p, 0.0):>11.2f}s" for p in PARTS)
            + f"{total:>8.1f}s{1 - steps / run_total:>9.1%}{1 - steps / total:>11.1%}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workloads", default=",".join(CONFIGS), help="comma list of CONFIGS keys")
    p.add_argument("--optimizer", default="base", choices=("base", "sam"))
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--full-length", action="store_true", help="the sweep's run lengths")
    p.add_argument(
        "--compare-test-every-epoch",
        action="store_true",
        help="also measure each run with the test split at every evaluation (before issue 21)",
    )
    p.add_argument("--test-every-epoch", action="store_true", help=argparse.SUPPRESS)  # child
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)  # run.py args, as JSON
    args, extra = p.parse_known_args(argv)
    if args.child is not None:
        print(json.dumps(_child(json.loads(args.child), args.threads, args.test_every_epoch)))
        return 0
    names = args.workloads.split(",")
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        p.error(f"unknown workloads {unknown}; expected some of {', '.join(CONFIGS)}")
    modes = {"": False} | ({" (test every epoch)": True} if args.compare_test_every_epoch else {})
    rows = {}
    for name in names:
        for suffix, every in modes.items():  # side by side: the same load on the machine
            s = _measure(
                name,
                args.optimizer,
                args.threads,
                extra,
                full_length=args.full_length,
                test_every_epoch=every,
            )
            rows[name + suffix] = s
            print(f"{name}{suffix}: {json.dumps({k: round(v, 3) for k, v in s.items()})}")
    print()
    length = "the sweep's run lengths" if args.full_length else "shortened runs"
    print(
        f"optimizer {args.optimizer}, {args.threads} thread(s), {length}; 'outside' = 1 - train steps"
    )
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
