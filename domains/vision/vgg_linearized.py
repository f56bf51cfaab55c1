"""CIFAR-10 with a centred, alpha-scaled VGG-11: the paper's linearized (lazy, NTK-like) regime
ablation (Shin et al., UAI 2025, app. E; Chizat, Oyallon & Bach 2019, "On Lazy Training in
Differentiable Programming", sec. 3 and their code edouardoyallon/lazy-training-CNN).

Task and data: CIFAR-10 exactly as ``cifar10-resnet18`` (45k train / 5k validation / 10k test,
random crop + flip, the same normalization; domains/vision/cifar10.py).
Model: VGG-11 for 32x32 inputs (convs 64-M-128-M-256-256-M-512-512-M-512-512-M, 3x3, with bias,
ReLU, no batch norm, then Linear(512, 10)); Xavier-normal init (gain 1) and zero biases, as
Chizat et al. The trained function is the centred, scaled model

    f_alpha(w, x) = alpha * (f(w, x) - f(w0, x))

with w0 a frozen copy of the initial weights, so f_alpha(w0, x) = 0 exactly for every input,
and the loss is (1 / alpha^2) * MSE(f_alpha(w, x), onehot(y)), MSE the mean over examples and
the 10 outputs (``nn.MSELoss``, as their code). Large alpha moves the function by O(1) while the
weights move by O(1/alpha): training stays near the linearization at w0 (lazy training).
Accuracy = argmax of f_alpha. Width k multiplies every conv's channels (1x = VGG-11).
Metric: accuracy in percent, ``val/acc`` selects, ``test/acc`` reported.
Paper (test acc, alpha = 1, 10, 100, 1000): SGD 88.3 71.5 53.5 53.1; SAM rho 0.001: 88.0 71.0
52.6 40.7 (SAM does not help in the lazy regime); rho grid {0.001, 0.01, 0.02}.
Recipe (assumed where the paper is silent): SGD momentum 0.9, wd 0, batch 128, 100 epochs (as
Chizat et al.'s script), lr 0.1 with x0.1 steps at 50/75% (their script decays lr/(1+epoch/3)).

    python runners/sweep.py sweeps/ablation-linearized-quick.yaml   # CPU minutes
    python runners/run.py --workload cifar10-vgg11-linearized --preset paper --alpha=100 \
        --optimizer both --rho 0.001 --device cuda
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from domains.registry import register
from domains.vision.cifar10 import _SMALL, _Cifar10
from domains.vision.common import VisionConfig
from domains.workload import ConfigError, build_config
from samcore.width import scale_width

VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")  # 32 -> 1 pixel


@dataclass(frozen=True)
class LinearizedConfig(VisionConfig):
    alpha: float = 1.0
    """output scale of the centred model f_alpha = alpha (f(w) - f(w0)); loss / alpha^2"""
    init_gain: float = 1.0
    """Xavier-normal gain of every conv and linear kernel (Chizat et al.'s script: 1.0)"""
    # the recipe (fields documented in TrainConfig); lr schedule assumed (module docstring)
    optimizer: str = "sgd"
    learning_rate: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_schedule: str = "step"
    lr_milestones: tuple[float, ...] = (0.5, 0.75)
    batch_size: int = 128
    num_epochs: int = 100
    rho: float = 0.001
    rho_grid: tuple[float, ...] = (0.001, 0.01, 0.02)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.alpha < float("inf"):
            raise ConfigError(f"alpha must be a finite number > 0, got {self.alpha}")
        if self.sparsity or self.match_params_of:  # masks would hit the frozen copy w0 too
            raise ConfigError("cifar10-vgg11-linearized has no sparsity ablation")


PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    **_SMALL,
    # CPU minutes: 2k train images, 3 epochs at 0.25x channels (see the quick sweep).
    "quick": {**_SMALL["quick"], "num_train": 2_000, "num_epochs": 3},
}


class VGG(nn.Module):
    """(B, 3, 32, 32) -> (B, 10): VGG-11's convs (with bias, ReLU, no batch norm), then a
    linear classifier on the (B, C) features left after five 2x2 max-pools."""

    def __init__(self, channels: tuple[Any, ...], num_classes: int = 10, gain: float = 1.0):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c in channels:
            if c == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU()]
                c_in = c
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):  # Chizat et al.: xavier_normal_, zero bias
                nn.init.xavier_normal_(m.weight, gain=gain)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))  # (B, C, 1, 1) -> (B, C) -> (B, 10)


class Centred(nn.Module):
    """f_alpha(w, x) = alpha * (net(x) - net0(x)), net0 a frozen copy of ``net`` at init: its
    parameters do not train (requires_grad off, so neither the optimizer, SAM's ascent nor
    the parameter count sees them) and move with the module between devices."""

    def __init__(self, net: nn.Module, alpha: float) -> None:
        super().__init__()
        self.net = net
        self.net0 = copy.deepcopy(net).requires_grad_(False)
        self.alpha = alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            f0 = self.net0(x)
        return self.alpha * (self.net(x) - f0)


def scaled_mse(
    outputs: torch.Tensor, y: torch.Tensor, alpha: float, num_classes: int, reduction: str = "mean"
) -> torch.Tensor:
    """(1 / alpha^2) * mean over the classes of (f_alpha - onehot(y))^2, per example; the mean
    (or sum) over examples. With reduction='mean' this is nn.MSELoss over (B, C) / alpha^2."""
    one_hot = F.one_hot(y, num_classes).to(outputs.dtype)
    per_example = (outputs - one_hot).pow(2).mean(1) / alpha**2
    return per_example.sum() if reduction == "sum" else per_example.mean()


class Cifar10VGG11Linearized(_Cifar10):
    widths = (1.0,)  # the ablation's axis is alpha, not the width

    def __init__(self, config: LinearizedConfig) -> None:
        super().__init__(config)
        self.config: LinearizedConfig = config

    def build_model(self, width: float) -> nn.Module:
        c = self.config
        channels = tuple(x if x == "M" else scale_width(x, width) for x in VGG11)
        model = Centred(VGG(channels, self.num_classes, c.init_gain), c.alpha)
        return self._finish_model(model)

    def criterion(
        self, logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean"
    ) -> torch.Tensor:
        return scaled_mse(logits, y, self.config.alpha, self.num_classes, reduction)


@register("cifar10-vgg11-linearized", domain="vision", presets=tuple(PRESETS))
def cifar10_vgg11_linearized(preset: str = "quick", **overrides: Any) -> Cifar10VGG11Linearized:
    """CIFAR-10, centred VGG-11 scaled by alpha with (1/alpha^2) MSE: the lazy regime (app. E)."""
    return Cifar10VGG11Linearized(build_config(LinearizedConfig, PRESETS, preset, **overrides))
