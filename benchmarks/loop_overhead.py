"""The runner's overhead: one run through ``runners/run.py`` against a bare hand-written loop.

Both sides, in one process, set up the same workload's data, build the same model
(``build_model``), train it with the same optimizer (samcore's base optimizer or ``SAM``) and
learning-rate schedule for the same steps, and evaluate the validation and test metrics after
every epoch, keeping the test value at the best validation epoch (the protocol's selection).
Both also measure the training-split metrics each epoch on the same examples (the training
curves the evidence needs; ``train_eval_size`` as in ``sweeps/cpu-evidence.yaml``), with the
same metrics per split (synthetic: MSE; MNIST: loss and accuracy; Cora: one forward, loss and
accuracy per mask), so the ratio is the runner's cost, not a difference in what is evaluated.
The bare loop is written plainly, as nanoGPT's or CleanRL's: batches by index, SAM's two
passes spelled out, no store, no checkpoints, no progress bar. The run.py side is everything a
user gets: the plan check, the store, metric rows, checkpoints and the table at the end.
Order alternates between repeats so machine drift hits both alike; the table shows medians of
process CPU seconds (this process and its children: steadier than wall time on a shared
machine) and the ratio run.py / bare (issue 21's target: <= 1.10), then the same for wall time.

    python benchmarks/loop_overhead.py                  # ~5 min on 2 shared cores
    python benchmarks/loop_overhead.py --workloads planetoid-cora --repeats 5
    python benchmarks/loop_overhead.py --quick          # seconds: checks that it runs

Extra arguments after the known ones go to run.py (e.g. ``--checkpoint-every 60``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from domains import create_workload, resolve_data_root
from domains.vision.common import normalize
from samcore import SAM, LRSchedule, build_optimizer, build_scheduler, parse_widths


@dataclass(frozen=True)
class Case:
    """One workload's measured configuration: the paper preset, shortened."""

    width: str
    overrides: dict[str, Any]
    quick: dict[str, Any]  # --quick: a few steps, for the smoke test


CASES: dict[str, Case] = {
    # 160 steps per epoch (20,400 examples, batch 128); evaluation on 2,048 train + 10,200
    "synthetic-regression": Case(
        "10x",
        {"num_epochs": 5, "train_eval_size": 2048},
        {"num_epochs": 1, "num_train": 512, "train_eval_size": 256},
    ),
    # LeNet-300-100 at 1x on the full 55,000 training images: 430 steps per epoch;
    # evaluation on 2,000 train + 5,000 val + 10,000 test images
    "mnist-mlp": Case(
        "1x",
        {"num_epochs": 2, "train_eval_size": 2000},
        {
            "num_epochs": 1,
            "synthetic_data": True,
            "num_train": 512,
            "num_test": 512,
            "train_eval_size": 256,
        },
    ),
    # full batch: one step and one evaluation per epoch (the paper preset has 200)
    "planetoid-cora": Case("16x", {"num_epochs": 40}, {"num_epochs": 3}),
}


# ---------------------------------------------------------------------- the bare loops
# Per workload: (training batches of an epoch, evaluation -> (val, test), higher is better)
def _synthetic(w: Any) -> tuple[Callable[[torch.Generator], Iterator[Any]], Callable, bool]:
    x, y = w.data["train"]
    bs = w.config.batch_size

    def batches(gen: torch.Generator) -> Iterator[Any]:
        for idx in torch.randperm(len(x), generator=gen).split(bs):
            yield x[idx], y[idx]

    n_train_eval = w.config.train_eval_size or len(x)

    def evaluate(model: torch.nn.Module) -> tuple[float, float]:
        (model(x[:n_train_eval]) - y[:n_train_eval]).pow(2).mean().item()  # the train curve
        return tuple(
            (model(xs) - ys).pow(2).mean().item() for xs, ys in (w.data["val"], w.data["test"])
        )

    return batches, evaluate, False


def _mnist(w: Any) -> tuple[Callable[[torch.Generator], Iterator[Any]], Callable, bool]:
    s, bs = w.splits, w.config.batch_size
    x, y = s.images["train"], s.labels["train"]

    def batches(gen: torch.Generator) -> Iterator[Any]:
        for idx in torch.randperm(len(y), generator=gen).split(bs):
            yield normalize(x[idx], s.mean, s.std), y[idx]

    def accuracy(model: torch.nn.Module, split: str) -> float:
        xs, ys = s.images[split], s.labels[split]
        if split == "train":  # the train curve: the workload's fixed subset
            xs, ys = xs[w._train_eval_idx], ys[w._train_eval_idx]
        correct, loss_sum = 0, 0.0
        for xb, yb in zip(xs.split(1000), ys.split(1000)):
            logits = model(normalize(xb, s.mean, s.std))
            loss_sum += F.cross_entropy(logits, yb, reduction="sum").item()
            correct += (logits.argmax(1) == yb).sum().item()
        return 100.0 * correct / len(ys)

    def evaluate(model: torch.nn.Module) -> tuple[float, float]:
        accuracy(model, "train")
        return accuracy(model, "val"), accuracy(model, "test")

    return batches, evaluate, True


def _cora(w: Any) -> tuple[Callable[[torch.Generator], Iterator[Any]], Callable, bool]:
    d = w.data

    def evaluate(model: torch.nn.Module) -> tuple[float, float]:
        logits = model(d.x, d.edge_index)
        accs = []
        for m in (d.train_mask, d.val_mask, d.test_mask):
            F.cross_entropy(logits[m], d.y[m]).item()
            accs.append((logits[m].argmax(-1) == d.y[m]).float().mean().item())
        return accs[1], accs[2]

    return (lambda gen: iter([d])), evaluate, True


BARE = {"synthetic-regression": _synthetic, "mnist-mlp": _mnist, "planetoid-cora": _cora}


def _clock() -> tuple[float, float]:
    """(CPU seconds of this process and its children, wall seconds)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system, time.perf_counter()


def _since(start: tuple[float, float]) -> tuple[float, float]:
    now = _clock()
    return now[0] - start[0], now[1] - start[1]


def bare_run(
    name: str, width: str, optimizer: str, overrides: dict[str, Any]
) -> tuple[float, float]:
    """(CPU, wall) seconds for the plain loop: data, model, steps, per-epoch evaluation,
    best-val test."""
    t0 = _clock()
    w = create_workload(name, "paper", **overrides)
    w.setup_data(resolve_data_root(None), torch.device("cpu"))
    (width_value,) = parse_widths(width, w.widths)
    torch.manual_seed(0)
    model = w.build_model(width_value)
    c = w.config
    opt = build_optimizer(
        model,
        c.optimizer,
        lr=c.learning_rate,
        weight_decay=c.weight_decay,
        momentum=c.momentum,
        betas=c.betas,
        eps=c.adam_eps,
        sam=optimizer == "sam",
        rho=c.rho,
    )
    steps = c.num_epochs * w.steps_per_epoch()
    sched = build_scheduler(
        opt, LRSchedule(c.lr_schedule, steps, tuple(c.lr_milestones), c.lr_gamma, c.warmup_steps)
    )
    batches, evaluate, higher_is_better = BARE[name](w)
    best_val, test_at_best = None, None
    gen = torch.Generator().manual_seed(0)
    for _epoch in range(c.num_epochs):
        model.train()
        for batch in batches(gen):
            loss, _ = w.loss(model, batch)
            loss.backward()
            if isinstance(opt, SAM):  # ascend to w + e, take the gradient there, step at w
                opt.first_step(zero_grad=True)
                w.loss(model, batch)[0].backward()
                opt.second_step(zero_grad=True)
            else:
                opt.step()
                opt.zero_grad()
            sched.step()
        model.eval()
        with torch.no_grad():
            val, test = evaluate(model)
        if best_val is None or (val > best_val if higher_is_better else val < best_val):
            best_val, test_at_best = val, test
    assert test_at_best is not None
    return _since(t0)


def engine_run(
    name: str, width: str, optimizer: str, overrides: dict[str, Any], extra: list[str]
) -> tuple[float, float]:
    """(CPU, wall) seconds for ``run.py`` with a fresh results folder (output swallowed)."""
    from runners.run import main

    args = ["--workload", name, "--preset", "paper", "--width", width, "--optimizer", optimizer]
    args += ["--seeds", "0", "--no-progress", "--no-memory-check", *extra]
    args += [f"--{k}={v}" for k, v in overrides.items()]
    with tempfile.TemporaryDirectory() as results:
        t0 = _clock()
        with contextlib.redirect_stdout(io.StringIO()):
            code = main([*args, "--results", results])
        seconds = _since(t0)
    if code != 0:
        raise SystemExit(f"run.py {' '.join(args)} exited with {code}")
    return seconds


def measure(
    name: str, optimizer: str, repeats: int, quick: bool, extra: list[str]
) -> dict[str, tuple[float, float]]:
    """Median (run.py, bare) seconds over ``repeats`` alternating pairs, after a warm-up:
    {"cpu": (run.py, bare), "wall": (run.py, bare)}."""
    case = CASES[name]
    overrides = case.quick if quick else case.overrides
    if not quick:  # imports, caches, first allocations
        warm = {**overrides, "num_epochs": 1}
        engine_run(name, case.width, optimizer, warm, extra)
        bare_run(name, case.width, optimizer, warm)
    engine: list[tuple[float, float]] = []
    bare: list[tuple[float, float]] = []
    for r in range(repeats):
        pair = [
            lambda: engine.append(engine_run(name, case.width, optimizer, overrides, extra)),
            lambda: bare.append(bare_run(name, case.width, optimizer, overrides)),
        ]
        for timed in pair if r % 2 == 0 else pair[::-1]:
            timed()
    return {
        clock: (statistics.median(e[i] for e in engine), statistics.median(b[i] for b in bare))
        for i, clock in enumerate(("cpu", "wall"))
    }


def _table(clock: str, rows: list[tuple[str, str, tuple[float, float]]]) -> str:
    head = (
        f"{'workload':<22} {'optimizer':<9} {'width':>6} {'run.py s':>9} {'bare s':>8} {'ratio':>6}"
    )
    lines = [f"{clock} seconds (median)", head]
    for name, optimizer, (engine, bare) in rows:
        lines.append(
            f"{name:<22} {optimizer:<9} {CASES[name].width:>6} {engine:>9.2f} {bare:>8.2f} "
            f"{engine / bare:>6.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workloads", default=",".join(CASES), help=f"some of {', '.join(CASES)}")
    p.add_argument("--optimizers", default="base,sam", help="base, sam or both (comma list)")
    p.add_argument("--repeats", type=int, default=3, help="timed pairs per row (median)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--quick", action="store_true", help="a few steps per run, one repeat")
    args, extra = p.parse_known_args(argv)
    names = args.workloads.split(",")
    if unknown := [n for n in names if n not in CASES]:
        p.error(f"unknown workloads {unknown}; expected some of {', '.join(CASES)}")
    torch.set_num_threads(args.threads)
    repeats = 1 if args.quick else args.repeats
    print(f"torch threads {args.threads}, median of {repeats}; run.py extra: {extra or 'none'}")
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    rows: dict[str, list[tuple[str, str, tuple[float, float]]]] = {"cpu": [], "wall": []}
    for name in names:
        for optimizer in args.optimizers.split(","):
            medians = measure(name, optimizer, repeats, args.quick, extra)
            for clock, pair in medians.items():
                rows[clock].append((name, optimizer, pair))
            print(_table("cpu", rows["cpu"][-1:]).splitlines()[-1], flush=True)
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(_table("cpu", rows["cpu"]))
    print(_table("wall", rows["wall"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
