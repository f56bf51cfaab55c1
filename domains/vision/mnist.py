"""MNIST with the LeNet-300-100 MLP at widths [300p, 100p], the paper's Fig. 1b (Shin et al.,
UAI 2025, appendix A; PAPERS.md).

Task: 10-class digit classification. Data: MNIST, 60k train / 10k test, read from the four IDX
``*-ubyte.gz`` files in ``<data root>/MNIST/raw`` (parsed here, no torchvision needed); when they
are not there and ``download`` is on, torchvision downloads them into the user cache. Pixels/255,
no normalization, no augmentation. The whole set lives on the device as uint8.
Validation: the last 5,000 of a fixed permutation of the 60k train images (stream
``vision/val-split`` of ``data_seed``), so training uses 55,000 (the paper trained on all 60k and
selected on test; PAPERS.md "pitfalls").
Model: 784 -> 300p -> 100p -> 10 ReLU MLP, p in {0.25, 0.5, 1, 4, 10} ("1x" = LeNet-300-100):
61,035 / 125,810 / 266,610 / 1,426,410 / 5,366,010 parameters.
Depth instead of width (App. E): ``depth`` hidden layers of 1000p units (presets
``paper-depth``/``quick-depth``; depth 1/2/3 at 1x = 795,010 / 1,796,010 / 2,797,010 parameters,
the paper's 0.8/1.8/2.8M; paper gain .113/.130/.183). Width still multiplies every hidden layer.
Metric: accuracy in percent (``val/acc`` selects, ``test/acc`` reported at the best val epoch).
Paper (test acc, p = 0.25 ... 10): SGD 98.20 98.55 98.56 98.67 98.67; SAM 98.27 98.61 98.74
98.86 98.85; best rho .02 .1 .2 .2 .2.
Recipe: SGD momentum 0.9, lr 0.1, batch 128, wd 1e-4, 100 epochs, lr x0.1 at 50/75% of training
(``paper``) or at 25/50/75% (``paper-code``, the official JAX code).

    python runners/run.py --workload mnist-mlp --width 0.25x,1x,4x --optimizer both --rho 0.1 \
        --preset quick --data-root /path/to/data

On a shared CPU, ``OMP_NUM_THREADS=1`` avoids OpenMP oversubscription (measured on 2 busy cores:
3.4 ms vs 370 ms per SGD step at 1x). Quick preset (20k train images, 10 epochs), base vs SAM rho
0.1 at 0.25x/1x/4x: 6.4 min wall on 2 shared cores; test acc SGD 96.72 97.34 97.51, SAM 96.71
97.30 97.70 (one seed).
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from domains.cache import build_once
from domains.data_check import verify
from domains.registry import register
from domains.vision.common import OnDeviceImageClassification, VisionConfig, cache_dir
from domains.workload import ConfigError, MissingDataError, build_config
from samcore.width import scale_width

FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


@dataclass(frozen=True)
class MnistConfig(VisionConfig):
    hidden: tuple[int, ...] = (300, 100)
    """hidden layer sizes at width 1x (LeNet-300-100); one size = that size in every layer"""
    depth: int = 2
    """hidden layers: ``hidden`` as given when it has ``depth`` sizes, or its one size repeated
    ``depth`` times (App. E's depth ablation: hidden 1000, depth 1/2/3 = 0.8/1.8/2.8M)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.depth < 1 or len(self.hidden) not in (1, self.depth):
            raise ConfigError(
                f"depth={self.depth} needs hidden with 1 or {self.depth} sizes, got {self.hidden}"
            )

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        """The ``depth`` hidden sizes at width 1x (width multiplies every one of them)."""
        return self.hidden if len(self.hidden) == self.depth else self.hidden * self.depth

    # the paper's recipe (fields documented in TrainConfig)
    optimizer: str = "sgd"
    learning_rate: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_schedule: str = "step"
    lr_milestones: tuple[float, ...] = (0.5, 0.75)
    batch_size: int = 128
    num_epochs: int = 100
    rho: float = 0.1
    rho_grid: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2)
    loss: str = "ce"
    """training loss: ce (cross-entropy) | mse (0.5 * squared error to one-hot targets, summed
    over the 10 classes, mean over examples: the squared loss of the paper's Fig. 6)"""


PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    # The official code's schedule: x0.1 at 25/50/75% of training.
    "paper-code": {"lr_milestones": (0.25, 0.5, 0.75)},
    # Seconds: CLI and registry tests.
    "smoke": {
        "num_train": 512,
        "num_val": 256,
        "num_test": 512,
        "num_epochs": 1,
        "train_eval_size": 512,
    },
    # Tests: random images of MNIST's shape (no data needed).
    "tiny": {
        "synthetic_data": True,
        "num_train": 64,
        "num_val": 32,
        "num_test": 32,
        "batch_size": 32,
        "num_epochs": 1,
        "train_eval_size": 32,
    },
    # CPU minutes: 20k train examples, 10 epochs, the paper's schedule shape; base vs SAM at
    # 0.25x, 1x, 4x fits in ~10 CPU minutes (see the module docstring's command).
    "quick": {"num_train": 20_000, "num_epochs": 10, "train_eval_size": 5_000},
    # Depth instead of width (App. E; issue 22): layers of 1000 units at 1x, the paper's recipe;
    # depth 1/2/3 via --depth (sweeps/ablation-depth.yaml). 784*1000+1000 + (d-1)*1,001,000 +
    # 10,010 = 795,010 / 1,796,010 / 2,797,010 parameters.
    "paper-depth": {"hidden": (1000,)},
    # CPU minutes: the quick preset's data and schedule at the same architecture.
    "quick-depth": {
        "hidden": (1000,),
        "num_train": 10_000,
        "num_epochs": 5,
        "train_eval_size": 2_000,
    },
}


def read_idx(path: Path) -> torch.Tensor:
    """An IDX file (gzipped or not) as a uint8 tensor of its declared shape.

    A damaged file (bad gzip stream, truncated, wrong header or size) raises ValueError naming
    the file, never a decoder traceback."""
    verify(path)  # a damaged canonical file is refused by its size and digest (issue 20)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise ValueError(
            f"{path}: unreadable ({type(exc).__name__}: {exc}); expected an IDX file"
            + (" compressed with gzip" if path.suffix == ".gz" else "")
        ) from None
    if len(data) < 4:
        raise ValueError(f"{path}: {len(data)} bytes, too short for an IDX header")
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:  # 0x08 = unsigned byte, the only type MNIST uses
        raise ValueError(f"{path}: not a uint8 IDX file (magic {data[:4].hex()}, expected 0000 08)")
    if len(data) < 4 + 4 * ndim:
        raise ValueError(f"{path}: header declares {ndim} dimensions but the file ends first")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = data[4 + 4 * ndim :]
    if len(body) != math.prod(shape):
        raise ValueError(
            f"{path}: {len(body)} bytes of data, expected {math.prod(shape)} for shape {shape}"
        )
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).view(*shape)


def find_mnist_raw(data_root: Path, download: bool) -> Path:
    """The folder holding the four IDX files: <data_root>/MNIST/raw, else the user cache
    (downloading there with torchvision when ``download``)."""
    names = [n for pair in FILES.values() for n in pair]
    candidates = [Path(data_root) / "MNIST" / "raw", cache_dir("torchvision") / "MNIST" / "raw"]
    for folder in candidates:
        if all((folder / n).exists() for n in names):
            return folder
    if download:
        try:
            from torchvision.datasets import MNIST

            def fetch(staging: Path) -> Path:
                MNIST(str(staging), train=True, download=True)
                return staging / "MNIST" / "raw"

            # one process downloads (a sweep's workers start together), the others wait
            build_once(candidates[1], fetch, lambda p: all((p / n).exists() for n in names))
            if all((candidates[1] / n).exists() for n in names):
                return candidates[1]
        except Exception as exc:  # offline, or torchvision missing: one clear error below
            reason = f"download failed ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"
        else:
            reason = "download produced no .gz files"
    else:
        reason = "download=false"
    raise MissingDataError(
        "MNIST", candidates[0], f"put {', '.join(names)} there (or give --data-root); {reason}"
    )


def load_mnist(
    data_root: Path, download: bool = True
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{"train": (uint8 (60000, 28, 28, 1), int64 (60000,)), "test": (10000, ...)}."""
    folder = find_mnist_raw(data_root, download)
    out = {}
    for split, (img_file, lbl_file) in FILES.items():
        x, y = read_idx(folder / img_file), read_idx(folder / lbl_file)
        if x.dim() != 3 or x.shape[1:] != (28, 28):
            raise ValueError(f"{folder / img_file}: shape {tuple(x.shape)}, expected (N, 28, 28)")
        if y.dim() != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(
                f"{folder / lbl_file}: shape {tuple(y.shape)}, expected ({x.shape[0]},) "
                f"(one label per image of {img_file})"
            )
        out[split] = (x.unsqueeze(-1), y.long())
    return out


class MnistMLP(OnDeviceImageClassification):
    widths = (0.25, 0.5, 1.0, 4.0, 10.0)  # p: hidden [300p, 100p]
    image_shape = (28, 28, 1)
    mean, std = (0.0,), (1.0,)  # pixels / 255 only, as the paper

    def __init__(self, config: MnistConfig) -> None:
        super().__init__(config)
        self.config: MnistConfig = config
        if config.loss not in ("ce", "mse"):
            raise ConfigError(f"loss must be ce or mse, got {config.loss!r}")

    @property
    def supports_seed_ensemble(self) -> bool:
        """Seeds can train as one vmapped model (no batch norm or dropout); not with sparsity
        masks, whose gradient hooks live on a single model's parameters."""
        return self.config.sparsity == 0 and self.config.match_params_of == 0

    def build_model(self, width: float) -> nn.Module:
        sizes = [784] + [scale_width(h, width) for h in self.config.hidden_sizes]
        layers: list[nn.Module] = [nn.Flatten()]  # (B, 1, 28, 28) -> (B, 784)
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        model = nn.Sequential(*layers, nn.Linear(sizes[-1], self.num_classes))
        for m in model:
            if isinstance(m, nn.Linear):
                # Flax's Dense default (the paper's code): LeCun truncated normal, zero bias.
                # Truncation at 2 std shrinks the variance by 0.8796^2, so the std is raised.
                std = 1 / math.sqrt(m.in_features) / 0.87962566103423978
                nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
                nn.init.zeros_(m.bias)
        return self.sparsify(model)

    def criterion(
        self, logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean"
    ) -> torch.Tensor:
        if self.config.loss == "ce":
            return super().criterion(logits, y, reduction)
        one_hot = torch.nn.functional.one_hot(y, self.num_classes).to(logits.dtype)
        per_example = 0.5 * (logits - one_hot).pow(2).sum(1)
        return per_example.sum() if reduction == "sum" else per_example.mean()

    def _load_raw(self, data_root: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        return load_mnist(data_root, self.config.download)


@register("mnist-mlp", domain="vision", presets=tuple(PRESETS), default=True)
def mnist_mlp(preset: str = "quick", **overrides: Any) -> MnistMLP:
    """MNIST, LeNet-300-100 MLP at hidden [300p, 100p], test accuracy (paper Fig. 1b)."""
    return MnistMLP(build_config(MnistConfig, PRESETS, preset, **overrides))
