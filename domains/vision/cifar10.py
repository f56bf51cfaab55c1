"""CIFAR-10 with a width-scaled ResNet-18 (the paper's Fig. 1c and its label-noise, sparsity and
no-weight-decay ablations) and with a width-scaled ViT (its "regularization needed" ablation).
Shin et al., UAI 2025, appendix A; numbers in PAPERS.md.

Task: 10-class image classification, 32x32 RGB. Data: CIFAR-10, 50k train / 10k test, from
(in order) the exact ``cifar-10-batches-py`` pickles under the data root or the user cache (what
torchvision downloads), else the held JPEG re-encoding ``<data root>/cifar10/cifar10-jpeg.tar``
(lossy; decoded once, straight from the tar members, into a uint8 tensor file in the cache),
else a torchvision download into the cache (``download``). Never another data set silently.
Validation: the last 5,000 of a fixed permutation of the train split (seed ``data_seed``);
training uses the other 45,000. Augmentation on the device, batched: random crop with 4-pixel
zero padding and horizontal flip; normalization mean (0.4914, 0.4822, 0.4465), std (0.2023,
0.1994, 0.2010).

cifar10-resnet18: 3x3 stem, no max-pool, BasicBlocks [2, 2, 2, 2], convs without bias, 1x1
conv + BN projection shortcuts; base filters 64k, k in {1/16 ... 4} ("1x" = 64 filters, the
standard ResNet-18): 44,622 / 176,402 / 701,466 / 2,797,610 / 11,173,962 / 44,662,922 /
178,585,866 parameters. Recipe: SGD momentum 0.9, lr 0.1 x0.1 at 50/75%, wd 5e-4, batch 128,
200 epochs. Paper test acc (4 ... 256 filters): SGD 83.62 88.79 92.57 94.06 95.03 95.24 95.77;
SAM 83.98 89.45 93.01 94.91 96.00 96.47 96.78. Label noise 0.75 (4/16/32/64 filters): SGD 54.4
36.5 26.8 21.7, SAM 59.9 69.5 71.0 71.8.

cifar10-vit: 6 pre-LN Transformer layers on 4x4 patches (64 tokens + class token), hidden 32k
for k in {1, 2, 4, 8, 16, 32} ("1x" = hidden 32), MLP 2x hidden, hidden/32 heads; SGD momentum
0.9 (assumed), lr 0.1 cosine, wd 1e-4, 200 epochs; rho grid {0.01, 0.02, 0.05, 0.1, 0.2} (the
paper's Table 2). Paper: the gain does not grow (.07 1.47 1.29 .74 .38 -.01 for hidden 32 ...
1024).

Metric: accuracy in percent, ``val/acc`` selects, ``test/acc`` is reported.

Measured here (2 shared CPU cores, OMP_NUM_THREADS=1): decoding the JPEG tar once, 51 s wall
(16 s CPU), then 0.5 s per load from the cache. Data path alone (benchmarks/vision_data.py, CPU,
1 thread): 29,400 images/s on the device path vs 4,500 with a torchvision DataLoader (2 workers).
ResNet-18 quick preset, base vs SAM rho 0.1 (train seconds): 0.0625x 59 / 69, 0.125x 44 / 88,
0.25x 168 / 213; about 14 min wall for all six runs. Test acc base / SAM: 33.3 / 27.7, 37.1 / 33.6,
38.2 / 33.1 (4 epochs on 5k images: a pipeline check, too short to show SAM's gain).

    python runners/run.py --workload cifar10-resnet18 --width 0.0625x,0.25x,1x --preset quick
    python runners/run.py --workload cifar10-resnet18 --width 1x --preset paper --device cuda \
        --label_noise=0.5 --rho 0.1
"""

from __future__ import annotations

import io
import math
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from domains.cache import build_once
from domains.data_check import DataError, verify
from domains.registry import register
from domains.vision.common import OnDeviceImageClassification, VisionConfig, cache_dir
from domains.workload import MissingDataError, build_config
from samcore.width import scale_width

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
Raw = dict[str, tuple[torch.Tensor, torch.Tensor]]


# ---------------------------------------------------------------------- data
def _read_pickles(folder: Path) -> Raw:
    """torchvision's layout: data_batch_1..5 and test_batch, rows of 3072 bytes (C, H, W)."""
    out = {}
    for split, names in (
        ("train", [f"data_batch_{i}" for i in range(1, 6)]),
        ("test", ["test_batch"]),
    ):
        xs, ys = [], []
        for name in names:
            verify(folder / name)  # not a canonical file: recorded as read (data identity)
            with open(folder / name, "rb") as f:
                d = pickle.load(f, encoding="latin1")
            xs.append(torch.as_tensor(d["data"], dtype=torch.uint8).view(-1, 3, 32, 32))
            ys.append(torch.as_tensor(d["labels"], dtype=torch.long))
        out[split] = (torch.cat(xs).permute(0, 2, 3, 1).contiguous(), torch.cat(ys))  # NHWC
    return out


def decode_jpeg_tar(tar_path: Path) -> Raw:
    """Decode ``cifar10-jpeg/{train,test}/<class>/NNNN.jpg`` from the tar (no extraction), in
    (split, class, file name) order; class index = position in CLASSES (ImageFolder's order)."""

    verify(tar_path)  # a cut or modified canonical tar is refused before decoding (issue 20)
    found: dict[str, list[tuple[int, str, torch.Tensor]]] = {"train": [], "test": []}
    try:
        _read_members(tar_path, found)
    except (tarfile.TarError, EOFError, OSError) as exc:  # cut mid-member, not a tar
        reason = " ".join(str(exc).split())[:160]
        raise DataError(f"{tar_path}: unreadable tar ({type(exc).__name__}: {reason})") from None
    out = {}
    for split, items in found.items():
        missing = sorted(set(CLASSES) - {CLASSES[t[0]] for t in items})
        if items and missing:  # e.g. a tar cut at a member boundary
            raise DataError(f"{tar_path}: no {split} images of class(es) {', '.join(missing)}")
        if not items:
            raise ValueError(f"{tar_path}: no {split} images in cifar10-jpeg/{split}/<class>/")
        items.sort(key=lambda t: (t[0], t[1]))
        out[split] = (torch.stack([t[2] for t in items]), torch.tensor([t[0] for t in items]))
    return out


def _read_members(tar_path: Path, found: dict[str, list[tuple[int, str, torch.Tensor]]]) -> None:
    from PIL import Image

    with tarfile.open(tar_path) as tar:
        for member in tar:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) < 3 or not parts[-1].endswith(".jpg"):
                continue
            split, cls = parts[-3], parts[-2]
            if split not in found or cls not in CLASSES:
                continue
            with Image.open(io.BytesIO(tar.extractfile(member).read())) as im:
                pixels = torch.frombuffer(bytearray(im.convert("RGB").tobytes()), dtype=torch.uint8)
            found[split].append(
                (CLASSES.index(cls), parts[-1], pixels.view(im.height, im.width, 3))
            )


def load_cifar10(data_root: Path, download: bool = True) -> Raw:
    """{"train": (uint8 (50000, 32, 32, 3), int64), "test": (uint8 (10000, 32, 32, 3), int64)}."""
    root, tv_cache = Path(data_root), cache_dir("torchvision")
    for folder in (
        root / "cifar10" / "cifar-10-batches-py",
        root / "cifar-10-batches-py",
        tv_cache / "cifar-10-batches-py",
    ):
        if (folder / "test_batch").exists():
            return _read_pickles(folder)
    tar_path = root / "cifar10" / "cifar10-jpeg.tar"
    if tar_path.exists():
        verify(tar_path)  # before the decoded cache too: a damaged tar is never served
        st = tar_path.stat()
        cached = cache_dir("cifar10") / f"cifar10-jpeg-{st.st_size}-{int(st.st_mtime)}.pt"
        decoded: list[Raw] = []

        def decode(staging: Path) -> Path:
            decoded.append(decode_jpeg_tar(tar_path))
            torch.save(decoded[0], staging / cached.name)
            return staging / cached.name

        # one process decodes (a sweep's workers start together), the others wait for its file
        build_once(cached, decode)
        return decoded[0] if decoded else torch.load(cached)
    reason = "download=false"
    if download:
        try:
            from torchvision.datasets import CIFAR10

            def fetch(staging: Path) -> Path:
                CIFAR10(str(staging), train=True, download=True)
                return staging / "cifar-10-batches-py"

            build_once(
                tv_cache / "cifar-10-batches-py", fetch, lambda p: (p / "test_batch").exists()
            )
            return _read_pickles(tv_cache / "cifar-10-batches-py")
        except Exception as exc:  # offline or no torchvision: one clear error
            reason = f"download failed ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"
    raise MissingDataError(
        "CIFAR-10",
        root,
        f"expected cifar10/cifar-10-batches-py/ or cifar10/cifar10-jpeg.tar there; {reason}",
    )


# ---------------------------------------------------------------------- ResNet-18
class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN + shortcut (1x1 conv + BN when the shape changes), ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class CifarResNet18(nn.Module):
    """(B, 3, 32, 32) -> (B, 10); stages at f, 2f, 4f, 8f filters on 32, 16, 8, 4 pixels,
    ``blocks_per_stage`` BasicBlocks each (2 = ResNet-18; App. E's depth ablation: 1 and 8)."""

    def __init__(self, filters: int, num_classes: int = 10, blocks_per_stage: int = 2) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, filters, 3, 1, 1, bias=False), nn.BatchNorm2d(filters), nn.ReLU()
        )
        blocks, c_in = [], filters
        for i in range(4):
            c_out = filters * 2**i
            for j in range(blocks_per_stage):
                blocks.append(BasicBlock(c_in, c_out, stride=2 if i > 0 and j == 0 else 1))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # He fan-out normal, as torchvision's ResNet
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):  # PyTorch's default, written out
                bound = 1 / math.sqrt(m.in_features)
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.uniform_(m.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))  # (B, 8f, 4, 4)
        return self.fc(x.mean((2, 3)))


# ---------------------------------------------------------------------- ViT
class CifarViT(nn.Module):
    """(B, 3, 32, 32) -> 64 patch tokens of 4x4 + class token -> 6 pre-LN blocks -> (B, 10)."""

    def __init__(
        self,
        hidden: int,
        depth: int = 6,
        patch: int = 4,
        mlp_ratio: int = 2,
        head_dim: int = 32,
        num_classes: int = 10,
        image_size: int = 32,
    ) -> None:
        super().__init__()
        n_tokens = (image_size // patch) ** 2 + 1
        self.patchify = nn.Conv2d(3, hidden, patch, patch)  # (B, D, 8, 8)
        self.cls = nn.Parameter(torch.zeros(1, 1, hidden))
        self.pos = nn.Parameter(torch.zeros(1, n_tokens, hidden))
        layer = nn.TransformerEncoderLayer(
            hidden,
            max(1, hidden // head_dim),
            mlp_ratio * hidden,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, num_classes)
        nn.init.trunc_normal_(self.pos, std=0.02)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        for blk in self.encoder.layers:  # the fused qkv projection, also Xavier per q, k, v
            nn.init.xavier_uniform_(blk.self_attn.in_proj_weight)
            nn.init.zeros_(blk.self_attn.in_proj_bias)
        nn.init.zeros_(self.head.weight)  # zero head, as the ViT reference code

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patchify(x).flatten(2).transpose(1, 2)  # (B, 64, D)
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], 1) + self.pos  # (B, 65, D)
        return self.head(self.norm(self.encoder(x))[:, 0])


# ---------------------------------------------------------------------- workloads
@dataclass(frozen=True)
class ResNetConfig(VisionConfig):
    base_filters: int = 64
    """filters of the first stage at width 1x (the standard ResNet-18)"""
    depth: int = 2
    """BasicBlocks per stage (2 = ResNet-18; App. E's depth ablation: 1, 2, 8 at 64 filters =
    4,903,242 / 11,173,962 / 48,798,282 parameters, the paper's 4.9/11.2/48.8M)"""
    # the paper's recipe (fields documented in TrainConfig)
    optimizer: str = "sgd"
    learning_rate: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_schedule: str = "step"
    lr_milestones: tuple[float, ...] = (0.5, 0.75)
    batch_size: int = 128
    num_epochs: int = 200
    rho: float = 0.1
    rho_grid: tuple[float, ...] = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


@dataclass(frozen=True)
class ViTConfig(VisionConfig):
    base_hidden: int = 32
    """Transformer width at 1x (heads = hidden / 32, MLP = 2 x hidden)"""
    depth: int = 6
    """Transformer layers"""
    # the paper's recipe; momentum 0.9 assumed (not stated)
    optimizer: str = "sgd"
    learning_rate: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_schedule: str = "cosine"
    batch_size: int = 128
    num_epochs: int = 200
    rho: float = 0.1
    rho_grid: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2)


_SMALL = {
    "smoke": {
        "num_train": 512,
        "num_val": 256,
        "num_test": 512,
        "num_epochs": 1,
        "train_eval_size": 512,
        "eval_batch_size": 256,
    },
    # Tests: random images of CIFAR's shape (no data needed).
    "tiny": {
        "synthetic_data": True,
        "num_train": 64,
        "num_val": 32,
        "num_test": 32,
        "batch_size": 32,
        "num_epochs": 1,
        "train_eval_size": 32,
        "eval_batch_size": 32,
    },
    # CPU minutes: 5k train images, 4 epochs, 2k val / 2k test; narrow widths (docstring).
    "quick": {
        "num_train": 5_000,
        "num_val": 2_000,
        "num_test": 2_000,
        "num_epochs": 4,
        "train_eval_size": 1_000,
        "eval_batch_size": 500,
    },
}
RESNET_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "paper-no-wd": {"weight_decay": 0.0},  # the "regularization needed" ablation
    **_SMALL,
}
VIT_PRESETS: dict[str, dict[str, Any]] = {"paper": {}, **_SMALL}


class _Cifar10(OnDeviceImageClassification):
    image_shape = (32, 32, 3)
    augment_pad = 4
    mean, std = MEAN, STD

    def _load_raw(self, data_root: Path) -> Raw:
        return load_cifar10(data_root, self.config.download)


class Cifar10ResNet18(_Cifar10):
    widths = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0, 2.0, 4.0)  # 4 ... 256 filters

    def build_model(self, width: float) -> nn.Module:
        c = self.config
        model = CifarResNet18(scale_width(c.base_filters, width), self.num_classes, c.depth)
        return self._finish_model(self.sparsify(model))


class Cifar10ViT(_Cifar10):
    widths = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)  # hidden 32 ... 1024

    def build_model(self, width: float) -> nn.Module:
        c = self.config
        model = CifarViT(
            scale_width(c.base_hidden, width, multiple_of=32),
            depth=c.depth,
            num_classes=self.num_classes,
        )
        return self.sparsify(model)


@register("cifar10-resnet18", domain="vision", presets=tuple(RESNET_PRESETS))
def cifar10_resnet18(preset: str = "quick", **overrides: Any) -> Cifar10ResNet18:
    """CIFAR-10, ResNet-18 at base filters 4..256, test accuracy (paper Fig. 1c)."""
    return Cifar10ResNet18(build_config(ResNetConfig, RESNET_PRESETS, preset, **overrides))


@register("cifar10-vit", domain="vision", presets=tuple(VIT_PRESETS))
def cifar10_vit(preset: str = "quick", **overrides: Any) -> Cifar10ViT:
    """CIFAR-10, 6-layer ViT at hidden 32..1024, test accuracy (paper's ViT ablation)."""
    return Cifar10ViT(build_config(ViTConfig, VIT_PRESETS, preset, **overrides))
