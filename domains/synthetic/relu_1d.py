"""One-hidden-layer ReLU nets on 1-D data, the paper's Figs. 2-3 (Shin et al., UAI 2025), after
tml-epfl/understanding-sam ``one_layer_relu_nets/1d_nn.ipynb`` (Andriushchenko & Flammarion 2022).

Data: the 12 points of Maennel et al. (2018) as the notebook builds them: x = (-5.5, -4.5, ...,
5.5)/4 + 0.07, y = 0.345 + (-2, 1.5, 0, 0, 2, 1, 0, -1, 0, 1, 2, -1). No held-out data: the
learned function is the result; ``val/loss`` and ``test/loss`` are the loss on all 12 points.
Model: x -> ReLU(w x + b) -> a^T (no output bias), m hidden neurons; the notebook's init (after
Blanc et al.): w = +-2.5 (random sign), b ~ 2.5 N(0, 1), a ~ 4 N(0, 1). Width "1x" = 1 neuron,
grid 5x/10x/100x/1000x = 5/10/100/1000 neurons (3m parameters).
Loss: 0.5 x squared error, mean over the mini-batch. Each step draws 6 of the 12 points without
replacement (the paper's "mini-batch of 6 random points"); an "epoch" is ``steps_per_epoch`` such
steps, so the store gets one row per that many steps.
Recipe: plain SGD (no momentum, no weight decay), the notebook's lr 5e-5 on 0.5 x the batch
*sum* = lr 3e-4 on our batch mean over 6 points, decayed linearly to 0 (the notebook decays
it only in its SAM branch; here both optimizers get the same schedule), 1e6 steps; SAM rho 0.2
(the paper; the notebook's default is 0.3).
Measured here (``runners/theory.py one-d-relu``): at lr 3e-4 the top Hessian eigenvalue at
init grows with m (the output weights' scale is fixed, not 1/sqrt(m)); see the README line.

    python runners/theory.py one-d-relu --preset quick
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from domains.registry import register
from domains.workload import ConfigError, Target, TrainConfig, Workload, build_config
from samcore.width import scale_width

# The notebook's data ("same data as paper by Maennel").
X_POINTS = tuple(
    v / 4 + 0.07 for v in (-5.5, -4.5, -3.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, 4.5, 5.5)
)
Y_POINTS = tuple(0.345 + v for v in (-2, 1.5, 0, 0, 2, 1, 0, -1, 0, 1, 2, -1))


@dataclass(frozen=True)
class Relu1dConfig(TrainConfig):
    init_scale: float = 1.0
    """multiplies every initial weight (the notebook's init_scale)"""
    steps_per_epoch: int = 1000
    """random mini-batches per logged "epoch" (one store row per epoch)"""
    # the recipe: batch 6 of 12, SGD without momentum, linear decay to 0, rho 0.2
    optimizer: str = "sgd"
    learning_rate: float = 3e-4
    lr_schedule: str = "linear"
    batch_size: int = 6
    num_epochs: int = 1000
    eval_every: int = 10
    rho: float = 0.2
    rho_grid: tuple[float, ...] = (0.2,)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.batch_size <= len(X_POINTS):
            raise ConfigError(f"batch_size must be in 1..{len(X_POINTS)}, got {self.batch_size}")
        if self.steps_per_epoch < 1:
            raise ConfigError(f"steps_per_epoch must be >= 1, got {self.steps_per_epoch}")


PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},  # 1e6 steps
    # CPU minutes: 5k steps (runners/theory.py one-d-relu sets the LR per width).
    "quick": {"num_epochs": 10, "steps_per_epoch": 500, "eval_every": 1},
    "smoke": {"num_epochs": 2, "steps_per_epoch": 20, "eval_every": 1},
}


class Relu1d(Workload):
    generator_params = ()  # fixed points (the notebook's data): no config field varies them
    target = Target("loss", "min")
    widths = (5.0, 10.0, 100.0, 1000.0)  # neurons (1x = 1 neuron)

    def __init__(self, config: Relu1dConfig) -> None:
        super().__init__(config)
        self.config: Relu1dConfig = config
        self.x = torch.tensor(X_POINTS).unsqueeze(1)
        self.y = torch.tensor(Y_POINTS).unsqueeze(1)

    def build_model(self, width: float) -> nn.Module:
        m, s = scale_width(1, width), self.config.init_scale
        model = nn.Sequential(nn.Linear(1, m), nn.ReLU(), nn.Linear(m, 1, bias=False))
        with torch.no_grad():  # the notebook's init, from the global (init-stream) generator
            hidden, out = model[0], model[2]
            hidden.weight.copy_(2.5 * s * (2 * torch.rand_like(hidden.weight).round() - 1))
            hidden.bias.copy_(2.5 * s * torch.randn_like(hidden.bias))
            out.weight.copy_(4.0 * s * torch.randn_like(out.weight))
        return model

    def setup_data(self, data_root: Path, device: torch.device) -> None:
        self.x, self.y = self.x.to(device), self.y.to(device)

    def steps_per_epoch(self) -> int:
        return self.config.steps_per_epoch

    def train_batches(self, epoch: int, generator: torch.Generator) -> Iterator[Any]:
        n, b = len(self.x), self.config.batch_size
        for _ in range(self.config.steps_per_epoch):
            idx = torch.randperm(n, generator=generator)[:b].to(self.x.device)
            yield self.x[idx], self.y[idx]

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, y = batch
        loss = 0.5 * (model(x) - y).pow(2).mean()
        return loss, {}

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        loss = self.loss(model, (self.x, self.y))[0].item()
        return {"train/loss": loss, "val/loss": loss, "test/loss": loss}


def function_on_grid(model: nn.Module, points: int = 201, margin: float = 0.1) -> tuple[list, list]:
    """(x, f(x)) on an even grid over the data's range plus ``margin`` each side."""
    lo, hi = min(X_POINTS) - margin, max(X_POINTS) + margin
    x = torch.linspace(lo, hi, points).unsqueeze(1)
    p = next(model.parameters())
    with torch.no_grad():
        y = model(x.to(p.device, p.dtype)).squeeze(1).cpu()
    return x.squeeze(1).tolist(), y.tolist()


@register("synthetic-relu-1d", domain="synthetic", presets=tuple(PRESETS))
def synthetic_relu_1d(preset: str = "quick", **overrides: Any) -> Relu1d:
    """One-hidden-layer ReLU net on 12 1-D points, GD/SAM learned functions (paper Figs. 2-3)."""
    return Relu1d(build_config(Relu1dConfig, PRESETS, preset, **overrides))
