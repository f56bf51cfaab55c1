"""What the vision workloads share: the on-device image-classification workload, its config
fields, the validation split rule, symmetric label noise, batched on-device augmentation, the
decoded-data cache, and fixed sparsity masks on kernels.

Data path (issue 5, "fast path"): every split is held as one uint8 tensor of shape (N, H, W, C)
on the training device. A training batch is an index into it; random crop (zero padding, as
torchvision's ``RandomCrop(padding=4)`` on the PIL image) and horizontal flip are done for the
whole batch at once by ``random_crop_flip``, then the batch is converted to float and normalized.
The random numbers come from the runner's per-epoch ``torch.Generator`` only, so an epoch's
batches are a pure function of (seed, epoch). No PIL, no DataLoader, no worker processes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from domains.data_check import reading
from domains.workload import ConfigError, Target, TrainConfig, Workload
from samcore.seeding import make_generator
from samcore.sharpness import smoothness_pl
from samcore.width import count_params

__all__ = [
    "VisionConfig",
    "ImageSplits",
    "OnDeviceImageClassification",
    "cache_dir",
    "carve_validation",
    "seeded_subset",
    "symmetric_label_noise",
    "random_crop_flip",
    "normalize",
    "apply_sparsity",
]


def cache_dir(*parts: str) -> Path:
    """The project's cache for decoded data: $XDG_CACHE_HOME (or ~/.cache)/sam-overparam/vision.

    Never the data root: the offline data folder is read-only (shared/data/README.md)."""
    root = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser()
    path = root.joinpath("sam-overparam", "vision", *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class VisionConfig(TrainConfig):
    """Fields every vision workload has (data sizes, split, ablations, device tricks)."""

    num_train: int = 0
    """training examples used, a seeded subset of the train split after carving val (0 = all)"""
    num_val: int = 5_000
    """validation examples carved from the official train split (seeded; model and rho selection)"""
    num_test: int = 0
    """test examples used, a seeded subset of the official test split (0 = all)"""
    data_seed: int = 0
    """seed of the validation split, subsets and label noise; the same for every training seed"""
    download: bool = True
    """when the data is not under the data root, download it with torchvision into the cache"""
    synthetic_data: bool = False
    """random images with the real shapes instead of the data set (tests and timing only)"""
    label_noise: float = 0.0
    """fraction of train labels replaced by a different random class, exactly, seeded; in [0, 1)"""
    noisy_val: bool = True
    """apply label_noise to the validation labels too (issue 5: as a user would have); test stays clean"""
    sparsity: float = 0.0
    """fraction of conv/linear kernel weights fixed at zero from init (biases and norms kept)"""
    match_params_of: float = 0.0
    """paper's matched-parameter mode: per width, the sparsity that keeps the parameter count of
    the dense model at this width multiplier (e.g. 0.25 = ResNet-18 with 16 filters); 0 = off"""
    sparsity_method: str = "random"
    """random (layer-wise, each kernel at the same rate) | snip (global |g * w| on one batch)"""
    train_eval_size: int = 10_000
    """training examples (fixed seeded subset, their possibly noisy labels) for train/loss, train/acc"""
    eval_batch_size: int = 1_000
    """examples per forward pass at evaluation"""
    channels_last: bool = True
    """channels_last memory format for conv nets on CUDA (ignored on CPU)"""
    smoothness_radius: float = 0.0
    """> 0: at every evaluation, the local smoothness and PL ratio of the training loss on the
    train-eval subset with this radius (samcore.sharpness.smoothness_pl; Fig. 21: 0.1), as
    metric rows train/smoothness, train/pl_ratio, train/grad_norm; 0 = off"""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.label_noise < 1.0:
            raise ConfigError(f"label_noise must be in [0, 1), got {self.label_noise}")
        if not 0.0 <= self.sparsity < 1.0:
            raise ConfigError(f"sparsity must be in [0, 1), got {self.sparsity}")
        if self.match_params_of < 0 or (self.match_params_of and self.sparsity):
            raise ConfigError("give sparsity or match_params_of (>= 0), not both")
        if self.sparsity_method not in ("random", "snip"):
            raise ConfigError(
                f"sparsity_method must be random or snip, got {self.sparsity_method!r}"
            )
        if self.num_val < 1:
            raise ConfigError("num_val must be >= 1 (model selection needs a validation split)")
        for key in ("num_train", "num_test", "train_eval_size"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key} must be >= 0, got {getattr(self, key)}")
        if not 0 <= self.smoothness_radius < math.inf:
            raise ConfigError(f"smoothness_radius must be >= 0, got {self.smoothness_radius}")
        if self.eval_batch_size < 1 or self.batch_size < 1:
            raise ConfigError("batch_size and eval_batch_size must be >= 1")


# ---------------------------------------------------------------------- splits and noise
def carve_validation(n: int, num_val: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, val) of a train split of ``n`` examples: val = the last ``num_val`` of a
    permutation drawn from stream ``vision/val-split`` of ``seed``; both sorted (original order)."""
    if not 0 < num_val < n:
        raise ConfigError(f"num_val must be in (0, {n}), got {num_val}")
    perm = torch.randperm(n, generator=make_generator(seed, "vision/val-split"))
    return perm[: n - num_val].sort().values, perm[n - num_val :].sort().values


def symmetric_label_noise(
    labels: torch.Tensor, rate: float, num_classes: int, generator: torch.Generator
) -> torch.Tensor:
    """A copy of ``labels`` in which exactly round(rate * N) labels, chosen uniformly, are
    replaced by a uniformly drawn *different* class (so the noise rate is exact, not
    rate * (C-1)/C as with "resample from all classes")."""
    if not 0.0 <= rate < 1.0:
        raise ConfigError(f"label noise rate must be in [0, 1), got {rate}")
    n = labels.numel()
    k = round(rate * n)
    idx = torch.randperm(n, generator=generator)[:k]
    shift = torch.randint(1, num_classes, (k,), generator=generator)  # 1..C-1: never the same
    noisy = labels.clone()
    noisy[idx] = (labels[idx].cpu() + shift).remainder(num_classes).to(labels.device)
    return noisy


def seeded_subset(n: int, k: int, seed: int, stream: str) -> torch.Tensor:
    """k of range(n), drawn uniformly without replacement by a named stream, sorted."""
    if not 0 < k <= n:
        raise ConfigError(f"cannot take {k} of {n} examples")
    return torch.randperm(n, generator=make_generator(seed, stream))[:k].sort().values


# ---------------------------------------------------------------------- augmentation
def random_crop_flip(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Batched RandomCrop(size, padding=pad) + RandomHorizontalFlip on uint8 (B, H, W, C).

    One offset pair and one flip bit per image, drawn from ``generator`` (CPU) and moved to
    x's device; the crop is a single gather, so cost does not grow with Python loops."""
    B, H, W, _ = x.shape
    dy = torch.randint(0, 2 * pad + 1, (B,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (B,), generator=generator).to(x.device)
    flip = (torch.rand(B, generator=generator) < 0.5).to(x.device)
    xp = F.pad(x, (0, 0, pad, pad, pad, pad))  # (B, H+2p, W+2p, C), zero = black pixels
    rows = dy[:, None] + torch.arange(H, device=x.device)  # (B, H)
    cols = torch.arange(W, device=x.device)
    cols = torch.where(flip[:, None], W - 1 - cols, cols) + dx[:, None]  # (B, W), flip folded in
    b = torch.arange(B, device=x.device)[:, None, None]
    return xp[b, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, C) -> float (B, C, H, W) in ((x/255 - mean) / std); on CUDA the result
    keeps the NHWC strides, i.e. it is already channels_last. On the CPU it is made contiguous
    NCHW: oneDNN's conv backward with a channels_last input and NCHW weights corrupts the heap
    on AVX2-only CPUs (torch 2.14.1; seen as a segfault or "double free" in ResNet-18)."""
    x = x.permute(0, 3, 1, 2).float().div_(255)
    if x.device.type == "cpu":
        x = x.contiguous()
    return x.sub_(mean[:, None, None]).div_(std[:, None, None])


# ---------------------------------------------------------------------- sparsity
def _kernels(model: nn.Module) -> list[nn.Parameter]:
    return [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@torch.no_grad()
def apply_sparsity(
    model: nn.Module, sparsity: float, method: str, batch_loss: Any = None, seed: int = 0
) -> dict[nn.Parameter, torch.Tensor]:
    """Zero a fraction ``sparsity`` of conv/linear kernel weights, fixed for all of training.

    random: each kernel pruned at the same rate, positions seeded. snip (Lee et al., 2019): one
    global threshold on |g * w| with g the gradient of ``batch_loss()`` (one training batch).
    Pruned weights stay exactly zero through every base and SAM step: a gradient hook zeroes
    their gradient (so the SAM ascent e, momentum and the update are zero there), and weight
    decay of a zero weight is zero. Returns the masks.
    """
    kernels = _kernels(model)
    gen = make_generator(seed, "vision/sparsity")
    if method == "random":
        masks = []
        for w in kernels:
            keep = w.numel() - round(sparsity * w.numel())
            order = torch.randperm(w.numel(), generator=gen)
            m = torch.zeros(w.numel(), dtype=torch.bool)
            m[order[:keep]] = True
            masks.append(m.view_as(w).to(w.device))
    elif method == "snip":
        if batch_loss is None:
            raise ValueError("snip needs a batch loss")
        with torch.enable_grad():
            grads = torch.autograd.grad(batch_loss(), kernels)
        scores = [(g * w).abs().flatten() for g, w in zip(grads, kernels)]
        flat = torch.cat(scores)
        keep = flat.numel() - round(sparsity * flat.numel())
        threshold = flat.topk(keep).values.min() if keep > 0 else math.inf
        masks = [(s >= threshold).view_as(w) for s, w in zip(scores, kernels)]
    else:
        raise ValueError(f"unknown sparsity method {method!r}")
    out = {}
    for w, m in zip(kernels, masks):
        w.mul_(m)
        m = m.to(w.dtype)
        w.register_hook(lambda g, m=m: g * m.to(g.device))
        out[w] = m
    return out


# ---------------------------------------------------------------------- the workload
@dataclass
class ImageSplits:
    """uint8 images (N, H, W, C) and int64 labels per split, all on one device."""

    images: dict[str, torch.Tensor]
    labels: dict[str, torch.Tensor]
    mean: torch.Tensor  # (C,) on the pixel/255 scale
    std: torch.Tensor  # (C,)


class OnDeviceImageClassification(Workload):
    """Classification with every split on the device; subclasses give the model and the raw
    splits (``_load_raw``) and say whether training batches are augmented."""

    target = Target("acc", "max", unit="accuracy", scale="percent")
    num_classes = 10
    augment_pad = 0  # > 0: random crop with this zero padding + horizontal flip
    image_shape: tuple[int, int, int] = (28, 28, 1)  # (H, W, C), for synthetic data
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    def __init__(self, config: VisionConfig) -> None:
        super().__init__(config)
        self.config: VisionConfig = config
        self.splits: ImageSplits | None = None
        self.device = torch.device("cpu")
        self.masks: dict[nn.Parameter, torch.Tensor] = {}

    # ---- data
    def _load_raw(self, data_root: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """{"train": (uint8 (N,H,W,C), int64 (N,)), "test": ...} of the official splits."""
        raise NotImplementedError

    def _synthetic_raw(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        c, gen = self.config, make_generator(self.config.data_seed, "vision/synthetic")
        sizes = {"train": (c.num_train or 1024) + c.num_val, "test": c.num_test or 512}
        return {
            s: (
                torch.randint(0, 256, (n, *self.image_shape), generator=gen, dtype=torch.uint8),
                torch.randint(0, self.num_classes, (n,), generator=gen),
            )
            for s, n in sizes.items()
        }

    def setup_data(self, data_root: Path, device: torch.device) -> None:
        c = self.config
        self.generator_params = (
            ("data_seed", "num_train", "num_val", "num_test") if c.synthetic_data else None
        )
        with reading() as files:  # the files behind the data, stored with each run
            raw = self._synthetic_raw() if c.synthetic_data else self._load_raw(Path(data_root))
        self.data_files = tuple(files)
        x_train, y_train = raw["train"]
        x_test, y_test = raw["test"]
        tr, va = carve_validation(len(y_train), c.num_val, c.data_seed)
        if c.num_train:  # a seeded subset of the remaining train examples (quick/smoke presets)
            tr = tr[seeded_subset(len(tr), c.num_train, c.data_seed, "vision/subset")]
        if c.num_test:  # a seeded subset: decoded folders are sorted by class, so never "first N"
            te = seeded_subset(len(y_test), c.num_test, c.data_seed, "vision/test-subset")
            x_test, y_test = x_test[te], y_test[te]
        labels = {"train": y_train[tr], "val": y_train[va], "test": y_test}
        if c.label_noise > 0:  # test labels stay clean
            for split in ("train", "val") if c.noisy_val else ("train",):
                gen = make_generator(c.data_seed, f"vision/label-noise/{split}")
                labels[split] = symmetric_label_noise(
                    labels[split], c.label_noise, self.num_classes, gen
                )
        images = {"train": x_train[tr], "val": x_train[va], "test": x_test}
        self.device = torch.device(device)
        self.splits = ImageSplits(
            images={k: v.to(self.device).contiguous() for k, v in images.items()},
            labels={k: v.to(self.device) for k, v in labels.items()},
            mean=torch.tensor(self.mean, device=self.device),
            std=torch.tensor(self.std, device=self.device),
        )
        n_eval = min(c.train_eval_size, len(tr))
        self._train_eval_idx = torch.randperm(
            len(tr), generator=make_generator(c.data_seed, "vision/train-eval")
        )[:n_eval].to(self.device)

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self._split("train")[1]) / self.config.batch_size)

    def _split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        if self.splits is None:
            raise RuntimeError("call setup_data first")
        return self.splits.images[name], self.splits.labels[name]

    def train_batches(self, epoch: int, generator: torch.Generator) -> Iterator[Any]:
        x, y = self._split("train")
        order = torch.randperm(len(y), generator=generator).to(self.device)
        for idx in order.split(self.config.batch_size):
            xb = x[idx]
            if self.augment_pad:
                xb = random_crop_flip(xb, self.augment_pad, generator)
            yield normalize(xb, self.splits.mean, self.splits.std), y[idx]

    # ---- model helpers
    def _finish_model(self, model: nn.Module) -> nn.Module:
        """channels_last on CUDA for conv nets (setup_data runs before build_model)."""
        if self.device.type == "cuda" and self.config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def _sparsity_for(self, model: nn.Module) -> float:
        """``sparsity``, or in matched mode the fraction of kernel weights to prune so that
        kept kernels + all other parameters = the dense count at ``match_params_of``."""
        c = self.config
        if not c.match_params_of:
            return c.sparsity
        with torch.device("meta"):
            target = count_params(self.build_model(c.match_params_of))
        kernels = sum(w.numel() for w in _kernels(model))
        kept = target - (count_params(model) - kernels)
        if not 0 < kept <= kernels:
            raise ConfigError(
                f"match_params_of={c.match_params_of:g} ({target:,} parameters) "
                f"cannot be matched by pruning a model of {count_params(model):,}"
            )
        return 1.0 - kept / kernels

    def sparsify(self, model: nn.Module) -> nn.Module:
        """Apply the configured sparsity mask (after init); SNIP scores one training batch."""
        c = self.config
        if next(model.parameters()).is_meta:  # counting only (dense count, as the paper's axis)
            return model
        sparsity = self._sparsity_for(model)
        if sparsity <= 0:
            return model
        batch_loss = None
        if c.sparsity_method == "snip":
            if self.splits is None:
                raise RuntimeError("snip sparsity needs setup_data before build_model")
            batch = next(self.train_batches(0, make_generator(c.data_seed, "vision/snip-batch")))
            dev = next(model.parameters()).device
            batch = tuple(t.to(dev) for t in batch)
            batch_loss = lambda: self.loss(model, batch)[0]  # noqa: E731
        self.masks = apply_sparsity(model, sparsity, c.sparsity_method, batch_loss, c.data_seed)
        return model

    # ---- objective
    def criterion(
        self, logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean"
    ) -> torch.Tensor:
        """The training loss of logits against class labels: cross-entropy (a workload may
        offer another, e.g. mnist-mlp's squared loss on one-hot targets)."""
        return F.cross_entropy(logits, y, reduction=reduction)

    # No autocast here: the run's ``precision`` (runners/engine/config.py) is the only source of
    # reduced precision, applied by the runner around the training step; evaluation is fp32.
    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, y = batch
        logits = model(x)
        loss = self.criterion(logits.float(), y)
        acc = 100.0 * (logits.argmax(1) == y).float().mean()  # percent, as evaluate()
        return loss, {"acc": acc.detach()}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, splits: Collection[str] | None = None) -> dict[str, float]:
        out: dict[str, float] = {}
        for split in ("train", "val", "test"):
            if splits is not None and split not in splits:
                continue
            x, y = self._split(split)
            if split == "train":
                x, y = x[self._train_eval_idx], y[self._train_eval_idx]
            loss_sum = torch.zeros((), device=self.device)
            correct = torch.zeros((), device=self.device)
            for xb, yb in zip(
                x.split(self.config.eval_batch_size), y.split(self.config.eval_batch_size)
            ):
                xb = normalize(xb, self.splits.mean, self.splits.std)
                logits = model(xb).float()
                loss_sum += self.criterion(logits, yb, reduction="sum")
                correct += (logits.argmax(1) == yb).sum()
            out[f"{split}/loss"] = (loss_sum / len(y)).item()
            out[f"{split}/acc"] = (100.0 * correct / len(y)).item()
        if splits is not None and "train" not in splits:
            return out  # the model-level extras come with the train split's metrics
        return {**out, **self.sparsity_metrics(model), **self.smoothness_metrics(model)}

    def smoothness_metrics(self, model: nn.Module) -> dict[str, float]:
        """Fig. 21's local smoothness and PL ratio on the train-eval subset (its possibly noisy
        labels, eval mode), when ``smoothness_radius`` > 0; L* = 0 (cross-entropy >= 0)."""
        c = self.config
        if not c.smoothness_radius:
            return {}
        x, y = self._split("train")
        x, y = x[self._train_eval_idx], y[self._train_eval_idx]
        batches = [
            (normalize(xb, self.splits.mean, self.splits.std), yb)
            for xb, yb in zip(x.split(c.eval_batch_size), y.split(c.eval_batch_size))
        ]
        out = smoothness_pl(model, self.loss, batches, radius=c.smoothness_radius)
        return {f"train/{k}": out[k] for k in ("smoothness", "pl_ratio", "grad_norm")}

    def sparsity_metrics(self, model: nn.Module) -> dict[str, float]:
        """Parameters left non-zero under the masks (the matched-parameter axis), if any."""
        if not self.masks:
            return {}
        pruned = sum(int((m == 0).sum()) for m in self.masks.values())
        return {
            "model/nonzero_params": float(count_params(model) - pruned),
            "model/sparsity": pruned / sum(m.numel() for m in self.masks.values()),
        }
