"""CIFAR-10 ResNet-18 epoch time: the suite's training path against a plain PyTorch loop.

  suite   the runner's path: the train set as uint8 on the device, batched crop/flip
          (domains/vision/common.py), bf16 autocast (run.py's ``--precision bf16``) and
          channels_last on CUDA (the workload's ``channels_last`` field), ``train_step`` (base, then SAM), optionally
          ``torch.compile`` (``--compile``); no host sync inside the epoch
  plain   the usual torchvision recipe: DataLoader with PIL RandomCrop/Flip/ToTensor/Normalize
          in ``--workers`` processes, fp32, NCHW, ``loss.backward(); opt.step()``

Rounds alternate suite-base, suite-SAM and plain epochs so drift hits all alike; reported are
median epoch times, suite/plain (base) and SAM/base (suite). On CUDA the default is the real
thing: ResNet-18 1x (64 filters), batch 128, full 45k-image epochs. On a CPU the same code
runs a reduced version (0.25x, --cpu-steps steps per "epoch", extrapolated to a full epoch)
and says so: CPU numbers only check the code path, they are not the GPU result.

    python benchmarks/cifar_epoch.py [--rounds 3] [--compile] [--data-root /path/to/data]
    python benchmarks/cifar_epoch.py --synthetic          # random images of CIFAR's shape
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import torch
import torch.nn.functional as F
from vision_data import _PILDataset  # benchmarks/ is on sys.path when run as a script

from domains import create_workload, resolve_data_root
from samcore import build_optimizer, make_generator, train_step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _optimizer(model, sam: bool) -> torch.optim.Optimizer:
    # The paper's CIFAR recipe (PAPERS.md): SGD lr 0.1, momentum 0.9, wd 5e-4; SAM rho 0.1.
    return build_optimizer(model, "sgd", lr=0.1, momentum=0.9, weight_decay=5e-4, sam=sam, rho=0.1)


def suite_epoch(workload, model, opt, epoch: int, max_steps: int | None) -> tuple[float, int]:
    """One epoch (or its first ``max_steps`` steps) of the runner's path; seconds, steps."""
    device = next(model.parameters()).device
    model.train()
    _sync(device)
    t0, n = time.perf_counter(), 0
    batches = workload.train_batches(epoch, make_generator(0, f"data-order/{epoch}"))
    for batch in itertools.islice(batches, max_steps):
        bf16 = torch.bfloat16 if device.type == "cuda" else None  # --precision bf16 on CUDA
        train_step(model, opt, workload.loss, batch, autocast_dtype=bf16)
        n += 1
    _sync(device)  # the only sync: at the end of the epoch, as the runner's loop
    return time.perf_counter() - t0, n


def plain_epoch(loader, model, opt, device, max_steps: int | None) -> tuple[float, int]:
    model.train()
    _sync(device)
    t0, n = time.perf_counter(), 0
    for x, y in itertools.islice(loader, max_steps):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        n += 1
    _sync(device)
    return time.perf_counter() - t0, n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default=None, help="default: $SAM_DATA, else the user cache")
    p.add_argument("--synthetic", action="store_true", help="random images of CIFAR's shape")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--width", type=float, default=None, help="default 1x on CUDA, 0.25x on CPU")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workers", type=int, default=8, help="plain loop's DataLoader workers")
    p.add_argument("--compile", action="store_true", help="torch.compile the suite's model")
    p.add_argument("--cpu-steps", type=int, default=3, help="steps per timed block on a CPU")
    args = p.parse_args()

    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    width = args.width or (1.0 if on_gpu else 0.25)
    max_steps = None if on_gpu else args.cpu_steps
    data = dict(batch_size=args.batch_size, synthetic_data=args.synthetic)
    if args.synthetic:
        data["num_train"] = 45_000 if on_gpu else 1_024
    suite = create_workload("cifar10-resnet18", "paper", **data)
    suite.setup_data(resolve_data_root(args.data_root), device)
    # The plain loop's model: the same architecture, fp32, NCHW (no bf16, no channels_last).
    plain = create_workload("cifar10-resnet18", "paper", channels_last=False, **data)
    plain.device = device  # build_model's device-dependent choices, without loading twice
    steps_per_epoch = suite.steps_per_epoch()
    where = "CUDA " + torch.cuda.get_device_name(device) if on_gpu else "CPU (REDUCED: not GPU)"
    print(
        f"{where}; torch {torch.__version__}, {torch.get_num_threads()} thread(s); ResNet-18 "
        f"{width:g}x, batch {args.batch_size}, {steps_per_epoch} steps per epoch"
        + ("" if max_steps is None else f", timing {max_steps} steps per block, extrapolated")
    )

    torch.manual_seed(0)
    models = {
        "base": suite.build_model(width).to(device),
        "sam": suite.build_model(width).to(device),
    }
    opts = {k: _optimizer(m, sam=k == "sam") for k, m in models.items()}
    step_models = {k: torch.compile(m) if args.compile else m for k, m in models.items()}
    plain_model = plain.build_model(width).to(device)
    plain_opt = _optimizer(plain_model, sam=False)

    from torchvision import transforms

    from domains.vision.cifar10 import MEAN, STD

    tf = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(MEAN, STD),
        ]
    )
    loader = torch.utils.data.DataLoader(
        _PILDataset(suite.splits.images["train"], suite.splits.labels["train"], tf),
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        pin_memory=on_gpu,
        persistent_workers=args.workers > 0,
    )

    def per_epoch(seconds: float, steps: int) -> float:
        return seconds / steps * steps_per_epoch  # == seconds for a whole epoch

    warm = 20 if on_gpu else 1  # cudnn autotuning, compile, allocator, worker start-up
    suite_epoch(suite, step_models["base"], opts["base"], 0, warm)
    suite_epoch(suite, step_models["sam"], opts["sam"], 0, warm)
    plain_epoch(loader, plain_model, plain_opt, device, warm)
    times: dict[str, list[float]] = {"base": [], "sam": [], "plain": []}
    for r in range(args.rounds):
        times["base"].append(
            per_epoch(*suite_epoch(suite, step_models["base"], opts["base"], r, max_steps))
        )
        times["sam"].append(
            per_epoch(*suite_epoch(suite, step_models["sam"], opts["sam"], r, max_steps))
        )
        times["plain"].append(
            per_epoch(*plain_epoch(loader, plain_model, plain_opt, device, max_steps))
        )
    med = {k: statistics.median(v) for k, v in times.items()}
    plain_ratio = statistics.median(b / p_ for b, p_ in zip(times["base"], times["plain"]))
    sam_ratio = statistics.median(s / b for s, b in zip(times["sam"], times["base"]))
    flags = "bf16 autocast + channels_last" if on_gpu else "fp32 (CPU)"
    print(
        f"suite, base SGD ({flags}{', compiled' if args.compile else ''}): {med['base']:.1f} s/epoch"
    )
    print(f"suite, SAM:                    {med['sam']:.1f} s/epoch")
    print(f"plain DataLoader({args.workers} workers) + fp32 loop: {med['plain']:.1f} s/epoch")
    print(
        f"suite/plain epoch time (base): {plain_ratio:.2f}x   SAM/base (suite): {sam_ratio:.2f}x"
        f"   (medians of {args.rounds} alternating rounds)"
    )


if __name__ == "__main__":
    main()
