"""ImageNet-1k with a width-scaled ResNet-50, the paper's Fig. 1d (Shin et al., UAI 2025,
appendix A; PAPERS.md).

Task: 1000-class classification. Data: a user-given ImageFolder tree ``<data root>/imagenet/
{train,val}/<wnid>/*.JPEG`` (val sorted into class folders, as torchvision's ImageNet prepares
it); not held offline and not downloadable, so without it setup fails with one MissingDataError.
Validation for selection: 10 images per class carved from train by a seeded rule (10,000);
the official val set is the test split. Train: Inception crop (RandomResizedCrop 224) + flip;
eval: resize 256, center crop 224. Images are decoded by DataLoader workers (uint8) and
normalized on the device.
Model: ResNet-50 (torchvision's Bottleneck, v1.5: stride on the 3x3) with base filters 16, 32,
48, 64, 80 = widths 0.25x ... 1.25x ("1x" = the standard ResNet-50): 1,993,976 / 6,917,640 /
14,771,992 / 25,557,032 / 39,272,760 parameters.
Metric: top-1 accuracy in percent. Paper: SGD 63.85 71.94 74.92 76.39 77.32; SAM 63.88 71.98
75.10 76.74 77.86.
Recipe: SGD momentum 0.9, batch 512, wd 1e-4, 90 epochs; ``paper``: lr 0.1 cosine with 5k
warm-up steps; ``paper-code`` (the official code): lr 0.2, x0.1 at 25/50/75%, no warm-up.
rho grid (the paper's Table 2): {0.01, 0.02, 0.05, 0.1, 0.2}, plus 0.005 for the two smallest
models (base filters 16 and 32; ``rho_grid_at``, used by a sweep's ``rho: paper``).
Remaining differences from the paper: validation is 10,000 images carved from train (the paper
selected on the official val set, our test split), so training sees 1.27M instead of 1.28M
images; the crop randomness comes from DataLoader worker seeds (seeded per run).

    python runners/run.py --workload imagenet-resnet50 --width 1x --preset paper --device cuda \
        --data-root /datasets   # expects /datasets/imagenet/{train,val}
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from domains.registry import register
from domains.vision.common import (
    OnDeviceImageClassification,
    VisionConfig,
    carve_validation,
    seeded_subset,
    symmetric_label_noise,
)
from domains.workload import MissingDataError, build_config
from samcore.seeding import make_generator
from samcore.width import scale_width

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ImageNetConfig(VisionConfig):
    base_filters: int = 64
    """stem filters at width 1x (the standard ResNet-50); stage widths 1, 2, 4, 8 x this"""
    image_size: int = 224
    """training crop and evaluation center crop, pixels"""
    eval_resize: int = 256
    """shorter side before the evaluation center crop, pixels"""
    num_workers: int = 8
    """DataLoader decoding processes"""
    num_val: int = 10_000
    """validation images carved from train (10 per class on average)"""
    num_classes: int = 1000
    """classes expected in the ImageFolder (checked; 0 = whatever the folder holds)"""
    # the paper's recipe (fields documented in TrainConfig)
    optimizer: str = "sgd"
    learning_rate: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_schedule: str = "cosine"
    warmup_steps: int = 5_000
    batch_size: int = 512
    num_epochs: int = 90
    train_eval_size: int = 10_000
    eval_batch_size: int = 256
    rho: float = 0.05
    rho_grid: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2)


# The paper's Table 2 adds this radius for the two smallest ResNet-50s (base filters 16, 32).
SMALL_MODEL_RHOS: tuple[float, ...] = (0.005,)
SMALL_MODELS = 2

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "paper-code": {
        "learning_rate": 0.2,
        "lr_schedule": "step",
        "lr_milestones": (0.25, 0.5, 0.75),
        "warmup_steps": 0,
    },
    # Seconds, on a tiny ImageFolder (the tests generate one): any class count.
    "smoke": {
        "num_classes": 0,
        "image_size": 32,
        "eval_resize": 36,
        "num_val": 4,
        "batch_size": 8,
        "num_epochs": 1,
        "warmup_steps": 0,
        "num_workers": 0,
        "train_eval_size": 8,
        "eval_batch_size": 8,
        "base_filters": 16,
    },
    # Tests: random images with the smoke shapes (no data needed).
    "tiny": {
        "synthetic_data": True,
        "num_classes": 10,
        "image_size": 32,
        "num_train": 32,
        "num_val": 16,
        "num_test": 16,
        "batch_size": 16,
        "num_epochs": 1,
        "warmup_steps": 0,
        "train_eval_size": 16,
        "eval_batch_size": 16,
        "base_filters": 16,
    },
    # A short schedule on a subset (still needs the data): 100 images per class, 5 epochs.
    "quick": {
        "num_train": 100_000,
        "num_epochs": 5,
        "warmup_steps": 500,
        "batch_size": 256,
        "train_eval_size": 5_000,
    },
}


def resnet50(filters: int, num_classes: int) -> nn.Module:
    """(B, 3, S, S) -> (B, classes): 7x7/2 stem, 3x3/2 max-pool, Bottlenecks [3, 4, 6, 3] at
    filters x (1, 2, 4, 8) (outputs x4), global average pool, linear."""
    from torchvision.models.resnet import Bottleneck

    layers: list[nn.Module] = [
        nn.Conv2d(3, filters, 7, 2, 3, bias=False),
        nn.BatchNorm2d(filters),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1),
    ]
    c_in = filters
    for i, n in enumerate((3, 4, 6, 3)):
        planes = filters * 2**i
        for j in range(n):
            stride = 2 if i > 0 and j == 0 else 1
            down = None
            if stride != 1 or c_in != planes * Bottleneck.expansion:
                down = nn.Sequential(
                    nn.Conv2d(c_in, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4)
                )
            layers.append(Bottleneck(c_in, planes, stride, down))
            c_in = planes * 4
    model = nn.Sequential(
        *layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes)
    )
    for m in model.modules():  # torchvision's init, explicit; last BN of each block at zero
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)
        if isinstance(m, Bottleneck):
            nn.init.zeros_(m.bn3.weight)  # residual branches start as identity (Goyal et al.)
    return model


class _Relabeled(torch.utils.data.Dataset):
    """``dataset[indices[i]]`` with label ``labels[i]`` (the split's, possibly noisy)."""

    def __init__(self, dataset: Any, indices: torch.Tensor, labels: torch.Tensor) -> None:
        self.dataset, self.indices, self.labels = dataset, indices.tolist(), labels.tolist()

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.dataset[self.indices[i]][0], self.labels[i]


class ImageNetResNet50(OnDeviceImageClassification):
    widths = (0.25, 0.5, 0.75, 1.0, 1.25)  # base filters 16, 32, 48, 64, 80
    mean, std = MEAN, STD

    def __init__(self, config: ImageNetConfig) -> None:
        super().__init__(config)
        self.config: ImageNetConfig = config
        self.sets: dict[str, _Relabeled] = {}

    def rho_grid_at(self, width: float) -> tuple[float, ...]:
        """``rho_grid``, plus 0.005 at the two smallest widths (the paper's Table 2)."""
        grid = tuple(self.config.rho_grid)
        if width in self.widths[:SMALL_MODELS]:
            grid = tuple(sorted(set(grid) | set(SMALL_MODEL_RHOS)))
        return grid

    def build_model(self, width: float) -> nn.Module:
        n_cls = self.num_classes if self.sets else (self.config.num_classes or 1000)
        model = resnet50(scale_width(self.config.base_filters, width), n_cls)
        return self._finish_model(self.sparsify(model))

    def setup_data(self, data_root: Path, device: torch.device) -> None:
        from torchvision import datasets, transforms

        c = self.config
        if c.synthetic_data:  # random images on the device, through the shared on-device path
            self.image_shape = (c.image_size, c.image_size, 3)
            self.num_classes = c.num_classes or 10
            self.sets = {}
            return super().setup_data(data_root, device)
        root = Path(data_root) / "imagenet"
        if not ((root / "train").is_dir() and (root / "val").is_dir()):
            raise MissingDataError(
                "ImageNet",
                root,
                "give --data-root holding imagenet/train and "
                "imagenet/val as ImageFolder trees (one folder per class); "
                "it cannot be downloaded",
            )
        s = c.image_size
        to_uint8 = transforms.PILToTensor()  # (3, S, S) uint8; normalized on the device
        train_tf = transforms.Compose(
            [transforms.RandomResizedCrop(s), transforms.RandomHorizontalFlip(), to_uint8]
        )
        eval_tf = transforms.Compose(
            [transforms.Resize(c.eval_resize), transforms.CenterCrop(s), to_uint8]
        )
        train_aug, train_eval = (
            datasets.ImageFolder(str(root / "train"), t) for t in (train_tf, eval_tf)
        )
        test = datasets.ImageFolder(str(root / "val"), eval_tf)
        if train_aug.classes != test.classes or (
            c.num_classes and len(test.classes) != c.num_classes
        ):
            raise MissingDataError(
                "ImageNet",
                root,
                f"expected {c.num_classes or 'the same'} class folders in train/ and val/",
            )
        self.num_classes = len(train_aug.classes)
        y_all = torch.tensor(train_aug.targets)
        tr, va = carve_validation(len(y_all), c.num_val, c.data_seed)  # as the on-device sets
        if c.num_train:
            tr = tr[seeded_subset(len(tr), c.num_train, c.data_seed, "vision/subset")]
        labels = {"train": y_all[tr], "val": y_all[va]}
        if c.label_noise > 0:
            for split in ("train", "val") if c.noisy_val else ("train",):
                gen = make_generator(c.data_seed, f"vision/label-noise/{split}")
                labels[split] = symmetric_label_noise(
                    labels[split], c.label_noise, self.num_classes, gen
                )
        test_idx = (  # a seeded subset: ImageFolder is sorted by class
            seeded_subset(len(test), c.num_test, c.data_seed, "vision/test-subset")
            if c.num_test
            else torch.arange(len(test))
        )
        ev = torch.randperm(len(tr), generator=make_generator(c.data_seed, "vision/train-eval"))
        ev = ev[: min(c.train_eval_size, len(tr))]
        self.sets = {
            "train": _Relabeled(train_aug, tr, labels["train"]),
            "train_eval": _Relabeled(train_eval, tr[ev], labels["train"][ev]),
            "val": _Relabeled(train_eval, va, labels["val"]),
            "test": _Relabeled(test, test_idx, torch.tensor(test.targets)[test_idx]),
        }
        self.device = torch.device(device)
        self._mean = torch.tensor(MEAN, device=self.device)[:, None, None]
        self._std = torch.tensor(STD, device=self.device)[:, None, None]

    def steps_per_epoch(self) -> int:
        if self.splits is not None:  # synthetic data
            return super().steps_per_epoch()
        return math.ceil(len(self.sets["train"]) / self.config.batch_size)

    def _batches(self, split: str, batch_size: int, order: list[int] | None) -> Iterator[Any]:
        c = self.config
        loader = torch.utils.data.DataLoader(
            self.sets[split],
            batch_size=batch_size,
            sampler=order,
            num_workers=c.num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
        )
        for x, y in loader:  # x: (B, 3, S, S) uint8
            x = (
                x.to(self.device, non_blocking=True)
                .float()
                .div_(255)
                .sub_(self._mean)
                .div_(self._std)
            )
            if self.device.type == "cuda" and c.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y.to(self.device, non_blocking=True)

    def train_batches(self, epoch: int, generator: torch.Generator) -> Iterator[Any]:
        # Crop and flip randomness comes from the workers' seeds, which torch derives from the
        # global generator (seeded per run by the runner).
        if self.splits is not None:  # synthetic data
            return super().train_batches(epoch, generator)
        order = torch.randperm(len(self.sets["train"]), generator=generator).tolist()
        return self._batches("train", self.config.batch_size, order)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, splits: Collection[str] | None = None) -> dict[str, float]:
        if self.splits is not None:  # synthetic data
            return super().evaluate(model, splits)
        out: dict[str, float] = {}
        for name, split in (("train", "train_eval"), ("val", "val"), ("test", "test")):
            if splits is not None and name not in splits:
                continue
            loss_sum = torch.zeros((), device=self.device)
            correct = torch.zeros((), device=self.device)
            for x, y in self._batches(split, self.config.eval_batch_size, None):
                logits = model(x).float()
                loss_sum += F.cross_entropy(logits, y, reduction="sum")
                correct += (logits.argmax(1) == y).sum()
            n = len(self.sets[split])
            out[f"{name}/loss"] = (loss_sum / n).item()
            out[f"{name}/acc"] = (100.0 * correct / n).item()
        if splits is not None and "train" not in splits:
            return out
        return {**out, **self.sparsity_metrics(model)}


@register("imagenet-resnet50", domain="vision", presets=tuple(PRESETS))
def imagenet_resnet50(preset: str = "quick", **overrides: Any) -> ImageNetResNet50:
    """ImageNet, ResNet-50 at base filters 16..80, top-1 accuracy (paper Fig. 1d)."""
    return ImageNetResNet50(build_config(ImageNetConfig, PRESETS, preset, **overrides))
