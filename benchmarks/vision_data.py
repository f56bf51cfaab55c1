"""Images/s of the vision fast path against a plain torchvision DataLoader loop, side by side.

Both produce the same training batches of CIFAR-10 (random crop with 4-pixel padding,
horizontal flip, normalization, as float (B, 3, 32, 32) on the device); no model is run, so
this times the data path alone.

  fast path     the whole train set as uint8 on the device; per batch one index, one batched
                crop/flip gather and one normalization (domains/vision/common.py)
  DataLoader    torchvision's usual recipe: per-image PIL RandomCrop + RandomHorizontalFlip +
                ToTensor + Normalize in ``--workers`` processes, then .to(device)

    python benchmarks/vision_data.py --data-root /path/to/data [--device cuda] [--workers 4]
    python benchmarks/vision_data.py --synthetic     # random images, no data needed
"""

from __future__ import annotations

import argparse
import time

import torch

from domains import create_workload, resolve_data_root
from samcore import make_generator


class _PILDataset(torch.utils.data.Dataset):
    """uint8 (N, H, W, C) images served one PIL image at a time, as torchvision's CIFAR10."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform) -> None:
        self.images, self.labels, self.transform = images.cpu().numpy(), labels.cpu(), transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fast_path(workload, device: torch.device, batches: int) -> float:
    n, t0 = 0, None
    for epoch in range(1000):
        for i, (x, _) in enumerate(workload.train_batches(epoch, make_generator(0, f"e{epoch}"))):
            if t0 is None and i == 2:  # skip warm-up batches
                _sync(device)
                t0, n = time.perf_counter(), 0
            n += len(x)
            if t0 is not None and n >= batches * len(x):
                _sync(device)
                return n / (time.perf_counter() - t0)
    raise RuntimeError("not enough batches")


def time_dataloader(
    workload, device: torch.device, batches: int, workers: int, batch_size: int
) -> float:
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
    x, y = workload.splits.images["train"], workload.splits.labels["train"]
    loader = torch.utils.data.DataLoader(
        _PILDataset(x, y, tf),
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
        persistent_workers=workers > 0,
    )
    n, t0 = 0, None
    while True:
        for i, (xb, yb) in enumerate(loader):
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            if t0 is None and i == 2:
                _sync(device)
                t0, n = time.perf_counter(), 0
            n += len(xb)
            if t0 is not None and n >= batches * batch_size:
                _sync(device)
                return n / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default=None, help="default: $SAM_DATA, else the user cache")
    p.add_argument("--synthetic", action="store_true", help="random images of CIFAR's shape")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--batches", type=int, default=100, help="timed batches per path")
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    args = p.parse_args()

    device = torch.device(args.device)
    workload = create_workload(
        "cifar10-resnet18",
        "paper",
        batch_size=args.batch_size,
        synthetic_data=args.synthetic,
        num_train=5_000 if args.synthetic else 0,
    )
    t = time.perf_counter()
    workload.setup_data(resolve_data_root(args.data_root), device)
    print(
        f"data: {len(workload.splits.labels['train']):,} train images on {device} "
        f"({time.perf_counter() - t:.1f}s to load), batch {args.batch_size}, "
        f"{args.batches} timed batches, torch threads {torch.get_num_threads()}"
    )
    fast = time_fast_path(workload, device, args.batches)
    slow = time_dataloader(workload, device, args.batches, args.workers, args.batch_size)
    print(f"{'path':<40} {'images/s':>12}")
    print(f"{'tensor on device, batched crop+flip':<40} {fast:>12,.0f}")
    print(f"{f'torchvision DataLoader, {args.workers} workers':<40} {slow:>12,.0f}")
    print(f"speed-up: {fast / slow:.1f}x")


if __name__ == "__main__":
    main()
