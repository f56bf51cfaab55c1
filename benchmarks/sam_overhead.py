"""SAM / base step-time ratio, measured side by side in one process.

Interleaves short blocks of base steps, our SAM steps and the widely used public SAM pattern
(copy every weight, per-parameter Python loop; written out below) so that machine drift hits
all three alike, and reports the median of per-round ratios. Two forward-backward passes put
the floor near 2.0x; the target is <= 2.1x.

    python benchmarks/sam_overhead.py [--rounds 15] [--steps 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from domains import create_workload
from samcore import SAM, train_step


class PublicSAM(torch.optim.Optimizer):
    """The common public implementation pattern (per-parameter loop, weights cloned per step)."""

    def __init__(self, params, base_optimizer, rho=0.05, **kwargs):
        super().__init__(params, dict(rho=rho, **kwargs))
        self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        self.param_groups = self.base_optimizer.param_groups

    @torch.no_grad()
    def first_step(self):
        norm = torch.norm(
            torch.stack(
                [
                    p.grad.norm(2)
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
                p.add_(p.grad * scale.to(p))
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


def _loss(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x), y), {}


def _time_block(model, opt, batch, steps, mode) -> float:
    """``mode``: "base" / "sam" (our two-step API) / "public" with identical raw loops, or
    "base_step" / "sam_step" through ``train_step`` (what the runner calls)."""
    t0 = time.perf_counter()
    for _ in range(steps):
        if mode in ("base_step", "sam_step"):
            train_step(model, opt, _loss, batch)
            continue
        opt.zero_grad()
        _loss(model, batch)[0].backward()
        if mode == "base":
            opt.step()
            continue
        opt.first_step(zero_grad=True) if mode == "sam" else opt.first_step()
        _loss(model, batch)[0].backward()
        opt.second_step()
    if next(model.parameters()).is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def measure(name: str, make_model, batch, rounds: int, steps: int) -> dict[str, float]:
    kw = dict(lr=0.01, momentum=0.9, weight_decay=5e-4)
    models = {m: make_model() for m in ("base", "sam", "public", "base_step", "sam_step")}
    opts = {
        "base": torch.optim.SGD(models["base"].parameters(), **kw),
        "sam": SAM(models["sam"].parameters(), torch.optim.SGD, rho=0.05, **kw),
        "public": PublicSAM(models["public"].parameters(), torch.optim.SGD, rho=0.05, **kw),
        "base_step": torch.optim.SGD(models["base_step"].parameters(), **kw),
        "sam_step": SAM(models["sam_step"].parameters(), torch.optim.SGD, rho=0.05, **kw),
    }
    for mode in models:
        _time_block(models[mode], opts[mode], batch, 3, mode)  # warm-up
    ratios: dict[str, list[float]] = {"ours": [], "public": [], "train_step": []}
    for _ in range(rounds):
        t = {mode: _time_block(models[mode], opts[mode], batch, steps, mode) for mode in models}
        ratios["ours"].append(t["sam"] / t["base"])
        ratios["public"].append(t["public"] / t["base"])
        ratios["train_step"].append(t["sam_step"] / t["base_step"])
    n = sum(p.numel() for p in models["base"].parameters())
    out = {k: statistics.median(v) for k, v in ratios.items()}
    print(
        f"{name:<22} {n:>10,} params  SAM/base: ours {out['ours']:.3f}x  public pattern "
        f"{out['public']:.3f}x  via train_step {out['train_step']:.3f}x  "
        f"(median of {rounds} rounds x {steps} steps)"
    )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=128)
    args = p.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    x = torch.randn(args.batch_size, 1, 28, 28)
    y = torch.randint(0, 10, (args.batch_size,))
    measure(
        "MNIST MLP k=1", lambda: workload_model("mnist-mlp", 1), (x, y), args.rounds, args.steps
    )
    measure(
        "MNIST MLP k=10", lambda: workload_model("mnist-mlp", 10), (x, y), args.rounds, args.steps
    )
    xc = torch.randn(32, 3, 32, 32)
    yc = torch.randint(0, 10, (32,))
    measure(
        "CIFAR ResNet-18 w16",
        lambda: workload_model("cifar10-resnet18", 0.25),
        (xc, yc),
        max(3, args.rounds // 3),
        max(2, args.steps // 4),
    )


if __name__ == "__main__":
    main()
