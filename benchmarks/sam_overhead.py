"""SAM / base step-time ratio, measured side by side in one process.

Interleaves short blocks of base steps, our SAM steps and the widely used public SAM pattern
(copy every weight, per-parameter Python loop; written out below) so that machine drift hits
all three alike, and reports the median of per-round ratios. Two forward-backward passes put
the floor near 2.0x; the target is <= 2.1x.

    python benchmarks/sam_overhead.py [--rounds 11] [--steps 20]
    SAM_DATA=/path/to/data python benchmarks/sam_overhead.py --all-domains   # ~5 min
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from domains import create_workload
from samcore import BASE_OPTIMIZERS, SAM, train_step


class PublicSAM(torch.optim.Optimizer):
    """The common public implementation pattern (per-parameter loop, weights cloned per step)."""

    def __init__(self, params, base_optimizer, rho=0.05, adaptive=False, **kwargs):
        super().__init__(params, dict(rho=rho, adaptive=adaptive, **kwargs))
        self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        self.param_groups = self.base_optimizer.param_groups

    @torch.no_grad()
    def first_step(self):
        norm = torch.norm(
            torch.stack(
                [
                    ((p.abs() if g["adaptive"] else 1.0) * p.grad).norm(2)
                    for g in self.param_groups
                    for p in g["params"]
                    if p.grad is not None
                ]
            ),
            2,
        )
        for group in self.param_groups:
            scale = group["rho"] / (norm + 1e-12)
            for p in group["params"]:
                if p.grad is None:
                    continue
                self.state[p]["old_p"] = p.data.clone()
                p.add_((p.pow(2) if group["adaptive"] else 1.0) * p.grad * scale.to(p))
        self.zero_grad()

    @torch.no_grad()
    def second_step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.data = self.state[p]["old_p"]
        self.base_optimizer.step()
        self.zero_grad()


def workload_model(name: str, width: float) -> nn.Module:
    """The suite's own model of a registered workload (what the runner trains)."""
    return create_workload(name, "paper").build_model(width)


def _ce_loss(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x), y), {}


def _time_block(model, opt, loss_fn, batches, steps, mode, split=None) -> float:
    """``mode``: "base" / "sam" (our two-step API) / "public" with identical raw loops, or
    "base_step" / "sam_step" through ``train_step`` (what the runner calls)."""
    t0 = time.perf_counter()
    for i in range(steps):
        batch = batches[i % len(batches)]
        if mode in ("base_step", "sam_step"):
            train_step(model, opt, loss_fn, batch, split=split)
            continue
        opt.zero_grad()
        loss_fn(model, batch)[0].backward()
        if mode == "base":
            opt.step()
            continue
        opt.first_step(zero_grad=True) if mode == "sam" else opt.first_step()
        loss_fn(model, batch)[0].backward()
        opt.second_step()
    if next(model.parameters()).is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t0


RATIOS = {
    "ours": ("sam", "base"),
    "public": ("public", "base"),
    "train_step": ("sam_step", "base_step"),
}


def measure(
    name: str,
    make_model: Callable[[], nn.Module],
    batches: list[Any],
    rounds: int,
    steps: int,
    loss_fn=_ce_loss,
    base: type[torch.optim.Optimizer] = torch.optim.SGD,
    kw: dict[str, Any] | None = None,
    split=None,
    adaptive: bool = False,
) -> dict[str, float]:
    """Median over ``rounds`` of per-round SAM/base time ratios; every mode runs one block
    of ``steps`` steps per round, in turn, so drift hits them alike. ``adaptive``: ASAM."""
    kw = kw if kw is not None else dict(lr=0.01, momentum=0.9, weight_decay=5e-4)
    models = {m: make_model() for m in ("base", "sam", "public", "base_step", "sam_step")}
    opts = {
        "base": base(models["base"].parameters(), **kw),
        "sam": SAM(models["sam"].parameters(), base, rho=0.05, adaptive=adaptive, **kw),
        "public": PublicSAM(models["public"].parameters(), base, 0.05, adaptive, **kw),
        "base_step": base(models["base_step"].parameters(), **kw),
        "sam_step": SAM(models["sam_step"].parameters(), base, 0.05, adaptive, **kw),
    }
    for model in models.values():
        model.train()
    for mode in models:  # warm-up (allocations, lazy init)
        _time_block(models[mode], opts[mode], loss_fn, batches, min(2, steps), mode, split)
    ratios: dict[str, list[float]] = {k: [] for k in RATIOS}
    for _ in range(rounds):
        t = {
            mode: _time_block(models[mode], opts[mode], loss_fn, batches, steps, mode, split)
            for mode in models
        }
        for k, (num, den) in RATIOS.items():
            ratios[k].append(t[num] / t[den])
    n = sum(p.numel() for p in models["base"].parameters())
    out = {k: statistics.median(v) for k, v in ratios.items()}
    print(
        f"{name:<28} {n:>10,} params  SAM/base: ours {out['ours']:.3f}x  public pattern "
        f"{out['public']:.3f}x  via train_step {out['train_step']:.3f}x  "
        f"(median of {rounds} rounds x {steps} steps, {base.__name__}"
        f"{', ASAM' if adaptive else ''})",
        flush=True,
    )
    return out


# Every domain's 1x model with its own loss, batches and base optimizer: (workload, preset,
# width, steps per block, overrides). Blocks are sized to ~0.1-1 s on one quiet CPU thread.
# CIFAR-10 ResNet-18 1x takes ~0.5 s per SGD step at batch 16 on one thread, so it runs one
# step per block at batch 16 (the model is the 1x one; only the batch is smaller).
DOMAINS = [
    ("synthetic-regression", "quick", 1.0, 40, {}),
    ("mnist-mlp", "quick", 1.0, 20, {}),
    ("cifar10-resnet18", "quick", 1.0, 1, {"batch_size": 16}),
    ("sst2-lstm", "quick", 1.0, 5, {}),
    ("ogbg-molhiv", "quick", 1.0, 5, {}),
]


def measure_workload(name, preset, width, rounds, steps, overrides) -> dict[str, float] | None:
    from domains import MissingDataError, resolve_data_root
    from samcore import make_generator

    workload = create_workload(name, preset, **overrides)
    try:
        workload.setup_data(resolve_data_root(None), torch.device("cpu"))
    except (MissingDataError, ImportError) as exc:  # stated, and the other domains go on
        print(f"{name:<28} skipped: {exc}")
        return None
    c = workload.config
    batches = []
    for batch in workload.train_batches(0, make_generator(0, "benchmark")):
        batches.append(batch)
        if len(batches) == 4:
            break
    kw: dict[str, Any] = {"lr": c.learning_rate, "weight_decay": c.weight_decay}
    if c.optimizer == "sgd":
        kw["momentum"] = c.momentum
    else:
        kw.update(betas=tuple(c.betas), eps=c.adam_eps)

    def make_model() -> nn.Module:
        torch.manual_seed(0)
        return workload.build_model(width)

    return measure(
        f"{name} {width:g}x (b{c.batch_size})",
        make_model,
        batches,
        rounds,
        steps,
        loss_fn=workload.loss,
        base=BASE_OPTIMIZERS[c.optimizer],
        kw=kw,
        split=getattr(workload, "split_batch", None),
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=11)
    p.add_argument("--steps", type=int, default=20, help="steps per block at MNIST 1x")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument(
        "--all-domains",
        action="store_true",
        help="also every domain's 1x model through its workload's loss, batches and optimizer "
        "(data from $SAM_DATA), and CartPole SAM-PPO via benchmarks/rl_ppo_speed.py",
    )
    args = p.parse_args()
    torch.manual_seed(0)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU "
        f"({os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start)"
    )
    x = torch.randn(args.batch_size, 1, 28, 28)
    y = torch.randint(0, 10, (args.batch_size,))
    for k, steps in ((1, args.steps), (10, max(2, args.steps // 4))):  # ~25x the FLOPs at 10x
        measure(
            f"MNIST MLP k={k}",
            lambda k=k: workload_model("mnist-mlp", k),
            [(x, y)],
            args.rounds,
            steps,
        )
    # ASAM: its |w| g and w^2 g must not cost more than SAM's climb (issue 18).
    measure(
        "MNIST MLP k=1 ASAM",
        lambda: workload_model("mnist-mlp", 1),
        [(x, y)],
        args.rounds,
        args.steps,
        adaptive=True,
    )
    if not args.all_domains:
        xc = torch.randn(32, 3, 32, 32)
        yc = torch.randint(0, 10, (32,))
        measure(
            "CIFAR ResNet-18 w16",
            lambda: workload_model("cifar10-resnet18", 0.25),
            [(xc, yc)],
            max(3, args.rounds // 3),
            max(2, args.steps // 4),
        )
        return
    print("every domain's 1x model, its own loss, data and base optimizer:")
    for name, preset, width, steps, overrides in DOMAINS:
        rounds = args.rounds if steps > 1 else max(5, args.rounds // 2)
        measure_workload(name, preset, width, rounds, steps, overrides)
    # SB3 owns PPO's loop: its own side-by-side benchmark (rollouts included in the time).
    rl = [sys.executable, str(Path(__file__).with_name("rl_ppo_speed.py")), "--rounds", "3"]
    out = subprocess.run(rl, capture_output=True, text=True)
    line = (out.stdout.strip() or out.stderr.strip() or "no output").splitlines()[-1]
    print(f"cartpole-ppo (rl_ppo_speed.py, whole learn() incl. rollouts): {line}")
    print(
        f"load average {os.getloadavg()[0]:.1f} at the end ({os.cpu_count()} cores): "
        "compare ratios measured at similar load"
    )


if __name__ == "__main__":
    main()
