"""Two-layer ReLU regression of Allen-Zhu, Li & Liang (NeurIPS 2019), the paper's Fig. 22 (Shin
et al., UAI 2025, two-layer generalization).

Task: x = g / ||g||, g ~ N(0, I_4) (on the unit sphere of R^4);
y = (sin 3x1 + sin 3x2 + sin 3x3 - 2)^2 * cos 7x4, no noise. 1,000 train / 5,000 test, plus
1,000 fresh validation draws (for the lr and rho selection; the paper had none).
Model: F(x) = sum_r a_r ReLU(w_r . x + b_r), m hidden units; the first layer (w_r, b_r) ~
N(0, 1/m) is trained, the second a_r ~ N(0, 1) is fixed (requires_grad False, so it is not a
trainable parameter and SAM does not perturb it). Width "1x" = m 100; grid 1x..50x (m 100 to
5,000; the paper's m values are not stated). Trainable parameters: 5m.
Loss: squared error, mean over examples. Metric: test MSE at the best validation epoch.
Recipe: SGD (no momentum), batch 50, wd 0, 800 epochs, lr x0.1 at 50%; grid lr in {1e-2, ...,
1e-7} and rho in {1e-1, ..., 1e-5}, chosen per width on validation
(``sweeps/theory-allen-zhu.yaml``).

Scale (why the stable lr falls as 1/m, and why short schedules learn little): the Hessian of
the mean squared loss at init is 2/n J J^T with the tangent kernel J J^T(x, x') = sum_r a_r^2
1[r active at x and x'] (x.x' + 1), so its trace is 2m in expectation (a_r^2 ~ 1, each unit
active half the time, ||x|| = 1) and its top eigenvalue about 0.7m (measured: 51-80 at m 100,
330-390 at 500, 670-720 at 1000): SGD is stable only for lr < 2/lambda_max ~ 2.8/m. The
target (variance 31 on the test draws; the constant predictor's test MSE is 30.9) lies mostly
in kernel directions below 1e-3 of the top eigenvalue (63% of it in eigenvectors 30-100 at
m = 1000), so even at the largest stable lr a few thousand steps fit only part of it: at lr
2.5/m, 100 epochs reach a test MSE of ~23.5, 200 epochs ~19.6 (m = 1000; lr 2/m at m = 100, 400
epochs: ~16).

    python runners/sweep.py sweeps/theory-allen-zhu.yaml     # quick grid; figure: report.py
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from domains.registry import register
from domains.workload import Target, TrainConfig, Workload, build_config
from samcore.seeding import make_generator
from samcore.width import scale_width


def target_function(x: torch.Tensor) -> torch.Tensor:
    """(sin 3x1 + sin 3x2 + sin 3x3 - 2)^2 cos 7x4 per row of x (N, 4) -> (N, 1)."""
    s = torch.sin(3 * x[:, :3]).sum(1) - 2
    return (s.pow(2) * torch.cos(7 * x[:, 3])).unsqueeze(1)


@dataclass(frozen=True)
class AllenZhuConfig(TrainConfig):
    num_train: int = 1_000
    """training examples"""
    num_val: int = 1_000
    """validation examples (fresh draws; lr and rho selection)"""
    num_test: int = 5_000
    """test examples"""
    data_seed: int = 0
    """seed of the data; the same for every training seed"""
    base_hidden: int = 100
    """hidden units m at width 1x"""
    # the recipe of Fig. 22
    optimizer: str = "sgd"
    learning_rate: float = 1e-2
    lr_schedule: str = "step"
    lr_milestones: tuple[float, ...] = (0.5,)
    batch_size: int = 50
    num_epochs: int = 800
    eval_every: int = 10
    rho: float = 1e-2
    rho_grid: tuple[float, ...] = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)


PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    # CPU minutes: 200 epochs (the first version's 100 fit little: see "Scale" above); the
    # quick sweep takes lr 2/m per width, below the stability limit ~2.8/m, and rho {0.1, 0.01}.
    "quick": {"num_epochs": 200, "eval_every": 10},
    "smoke": {"num_train": 100, "num_val": 50, "num_test": 100, "num_epochs": 2, "eval_every": 1},
}


class TwoLayerFixedOutput(nn.Module):
    """x -> a^T ReLU(W x + b) with a fixed (a buffer, not a parameter)."""

    def __init__(self, in_dim: int, hidden: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(in_dim, hidden)
        self.register_buffer("a", torch.zeros(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.hidden(x)) @ self.a  # (B, m) @ (m, 1) -> (B, 1)


class AllenZhuRegression(Workload):
    generator_params = (
        "data_seed",
        "num_train",
        "num_val",
        "num_test",
    )  # the config fields the data is drawn from
    target = Target("mse", "min", unit="MSE")
    widths = (1.0, 5.0, 10.0, 50.0)  # m = 100, 500, 1000, 5000
    supports_seed_ensemble = False  # the fixed layer is a buffer

    def __init__(self, config: AllenZhuConfig) -> None:
        super().__init__(config)
        self.config: AllenZhuConfig = config
        self.data: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def build_model(self, width: float) -> nn.Module:
        m = scale_width(self.config.base_hidden, width)
        model = TwoLayerFixedOutput(4, m)
        with torch.no_grad():  # from the runner's init stream (the global generator)
            model.hidden.weight.normal_(0, 1 / math.sqrt(m))
            model.hidden.bias.normal_(0, 1 / math.sqrt(m))
            model.a.normal_(0, 1)
        return model

    def setup_data(self, data_root: Path, device: torch.device) -> None:
        c = self.config
        gen = make_generator(c.data_seed, "synthetic-allen-zhu")
        for split, n in (("train", c.num_train), ("val", c.num_val), ("test", c.num_test)):
            g = torch.randn(n, 4, generator=gen)
            x = g / g.norm(dim=1, keepdim=True)
            self.data[split] = (x.to(device), target_function(x).to(device))

    def steps_per_epoch(self) -> int:
        return math.ceil(self.config.num_train / self.config.batch_size)

    def train_batches(self, epoch: int, generator: torch.Generator) -> Iterator[Any]:
        x, y = self.data["train"]
        order = torch.randperm(len(x), generator=generator).to(x.device)
        for idx in order.split(self.config.batch_size):
            yield x[idx], y[idx]

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, y = batch
        mse = (model(x) - y).pow(2).mean()
        return mse, {"mse": mse.detach()}

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        return {f"{s}/mse": (model(x) - y).pow(2).mean().item() for s, (x, y) in self.data.items()}


@register("synthetic-allen-zhu", domain="synthetic", presets=tuple(PRESETS))
def synthetic_allen_zhu(preset: str = "quick", **overrides: Any) -> AllenZhuRegression:
    """Two-layer ReLU net (first layer trained, second fixed) on Allen-Zhu et al.'s target."""
    return AllenZhuRegression(build_config(AllenZhuConfig, PRESETS, preset, **overrides))
