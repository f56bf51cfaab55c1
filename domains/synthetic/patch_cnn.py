"""Signal-noise patch data and a two-layer ReLU CNN: the setting of "Why Does Sharpness-Aware
Minimization Generalize Better Than SGD?" (Chen, Zhang, Kou, Chen, Hsieh, Gu; NeurIPS 2023).

Data: x = (x_1, x_2), two patches in R^d. A clean label y~ is +-1 with equal probability; one
patch (position chosen at random) is the signal y~ * mu with ||mu|| = ``signal_strength``, the
other is noise xi ~ N(0, sigma_p^2 (I - mu mu^T / ||mu||^2)) (orthogonal to mu). The observed
label y is y~ flipped with probability ``flip_prob`` (the paper's label-flipping noise p; part
of the data model, so not named like the ``label_noise`` ablation axis of results/analysis.py,
whose non-zero runs leave the width tables for the label-noise ablation table).
Model: f(W, x) = F_{+1}(W_{+1}, x) - F_{-1}(W_{-1}, x) with
F_j(W_j, x) = (1/m) sum_{r=1..m} sum_{p=1,2} ReLU(<w_{j,r}, x_p>): m filters per class shared
over the patches, second layer fixed to +-1/m, 2*m*d trainable weights, init N(0, sigma_0^2).
Loss: logistic, log(1 + exp(-y f(W, x))). Metric: test error P(y != sign f) on fresh draws with
noisy labels, as the paper's (its floor is ``flip_prob``); ``clean_error`` against y~ too.

The theory: GD/SGD overfits harmfully (memorizes the noise patches) when n ||mu||^4 is small
against sigma_p^4 d, SAM prevents the early noise learning and stays benign over a larger part
of the (signal strength, dimension) plane. The paper's exact experiment constants are not held
offline; the presets below are this suite's choices (documented, CPU-sized), full-batch GD
with the paper's small-init regime.

    python runners/run.py --workload synthetic-patch-cnn --preset quick --optimizer both
    python runners/theory.py patch-heatmap --preset quick
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from domains.registry import register
from domains.workload import Target, TrainConfig, Workload, build_config
from samcore.seeding import make_generator
from samcore.width import scale_width


@dataclass(frozen=True)
class PatchConfig(TrainConfig):
    dim: int = 1000
    """d: dimension of each patch"""
    signal_strength: float = 2.0
    """||mu||: norm of the signal vector"""
    noise_std: float = 1.0
    """sigma_p: std of the noise patch (in the d - 1 directions orthogonal to mu)"""
    flip_prob: float = 0.1
    """p: probability that an observed label is flipped"""
    num_train: int = 100
    """n: training examples"""
    num_val: int = 1000
    """validation examples (model and rho selection)"""
    num_test: int = 4000
    """test examples"""
    base_filters: int = 10
    """m: filters per class at width 1x"""
    init_std: float = 0.01
    """sigma_0: std of the Gaussian initialisation (small init, as the theory assumes)"""
    data_seed: int = 0
    """seed of mu and of the data set; the same for every training seed"""
    # full-batch gradient descent (batch_size = num_train), constant learning rate
    optimizer: str = "sgd"
    learning_rate: float = 0.5
    batch_size: int = 100
    num_epochs: int = 300
    eval_every: int = 25
    rho: float = 0.05
    rho_grid: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2)


PRESETS: dict[str, dict[str, Any]] = {
    # Seconds: the registry and CLI tests.
    "smoke": {
        "dim": 64,
        "num_train": 32,
        "batch_size": 32,
        "num_val": 64,
        "num_test": 64,
        "num_epochs": 3,
        "eval_every": 1,
    },
    # One heatmap cell in about a second on one CPU core.
    "quick": {"num_epochs": 200},
    # Longer training, larger evaluation sets.
    "paper": {"num_val": 2000, "num_test": 10_000, "num_epochs": 1000, "eval_every": 50},
}


class PatchCNN(nn.Module):
    """Two-layer CNN over 2 patches, fixed second layer +-1/m; input (B, 2, d) -> (B,)."""

    def __init__(self, dim: int, filters: int, init_std: float) -> None:
        super().__init__()
        self.filters = filters
        self.weight = nn.Parameter(torch.randn(2, filters, dim) * init_std)  # (class j, r, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = F.relu(torch.einsum("bpd,jrd->bjrp", x, self.weight))  # (B, 2 classes, m, 2)
        per_class = act.sum(dim=(2, 3)) / self.filters  # F_{+1}, F_{-1}: (B, 2)
        return per_class[:, 0] - per_class[:, 1]


class SignalNoisePatches(Workload):
    generator_params = (
        "data_seed",
        "dim",
        "signal_strength",
        "noise_std",
        "flip_prob",
        "num_train",
        "num_val",
        "num_test",
    )  # the config fields the data is drawn from
    target = Target("error", "min")
    widths = (1.0, 2.0, 4.0, 8.0)

    def __init__(self, config: PatchConfig) -> None:
        super().__init__(config)
        self.config: PatchConfig = config
        if not 0 <= config.flip_prob < 0.5:
            raise ValueError(f"flip_prob must be in [0, 0.5), got {config.flip_prob}")
        if config.dim < 2 or config.signal_strength < 0 or config.noise_std < 0:
            raise ValueError("need dim >= 2, signal_strength >= 0 and noise_std >= 0")
        self.data: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def build_model(self, width: float) -> nn.Module:
        c = self.config
        return PatchCNN(c.dim, scale_width(c.base_filters, width), c.init_std)

    def signal(self) -> torch.Tensor:
        """mu: a fixed direction (first basis vector) scaled to ``signal_strength``."""
        mu = torch.zeros(self.config.dim)
        mu[0] = self.config.signal_strength
        return mu

    def sample(
        self, n: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """n draws: inputs (n, 2, d), observed labels (n,) and clean labels (n,), in {-1, +1}."""
        c = self.config
        mu = self.signal()
        clean = torch.randint(0, 2, (n,), generator=generator).float() * 2 - 1
        flip = torch.rand(n, generator=generator) < c.flip_prob
        noisy = torch.where(flip, -clean, clean)
        xi = torch.randn(n, c.dim, generator=generator) * c.noise_std
        u = mu / mu.norm() if c.signal_strength > 0 else torch.zeros(c.dim)
        xi = xi - (xi @ u)[:, None] * u  # covariance sigma_p^2 (I - u u^T)
        signal_first = torch.rand(n, generator=generator) < 0.5
        sig = clean[:, None] * mu  # (n, d)
        x = torch.where(
            signal_first[:, None, None], torch.stack([sig, xi], 1), torch.stack([xi, sig], 1)
        )
        return x, noisy, clean

    def setup_data(self, data_root: Path, device: torch.device) -> None:
        c = self.config
        gen = make_generator(c.data_seed, "synthetic-patch-cnn")  # data_root unused: drawn here
        for split, n in (("train", c.num_train), ("val", c.num_val), ("test", c.num_test)):
            self.data[split] = tuple(t.to(device) for t in self.sample(n, gen))

    def steps_per_epoch(self) -> int:
        return math.ceil(self.config.num_train / self.config.batch_size)

    def train_batches(self, epoch: int, generator: torch.Generator) -> Iterator[Any]:
        x, y, _ = self.data["train"]
        order = torch.randperm(len(x), generator=generator).to(x.device)
        for idx in order.split(self.config.batch_size):
            yield x[idx], y[idx]

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, y = batch
        margin = y * model(x)
        return F.softplus(-margin).mean(), {"error": (margin <= 0).float().mean().detach()}

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        out = {}
        for split, (x, y, clean) in self.data.items():
            f = model(x)
            out[f"{split}/loss"] = F.softplus(-y * f).mean().item()
            out[f"{split}/error"] = (y * f <= 0).float().mean().item()
            out[f"{split}/clean_error"] = (clean * f <= 0).float().mean().item()
        return out


@register("synthetic-patch-cnn", domain="synthetic", presets=tuple(PRESETS))
def synthetic_patch_cnn(preset: str = "quick", **overrides: Any) -> SignalNoisePatches:
    """Signal-noise patches, two-layer ReLU CNN, logistic loss (Chen et al., NeurIPS 2023)."""
    return SignalNoisePatches(build_config(PatchConfig, PRESETS, preset, **overrides))
