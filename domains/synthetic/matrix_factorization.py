"""Matrix factorization, the paper's linear-convergence experiment (Shin et al., UAI 2025).

Task: y = A x, A in R^{10x6} with N(0, 1) entries (fixed by ``data_seed``), x ~ N(0, I_6), no
noise; 1,000 training examples, 1,000 fresh validation and 1,000 test examples. Model: the
two-factor linear net x -> U V x, V in R^{k x 6}, U in R^{10 x k}, no biases, PyTorch's default
Linear init; rank k is the width (1x = rank 1; the paper's k in {4, 10}: k = 4 < rank(A) = 6
cannot fit A, k = 10 is overparameterized and interpolates). 16k parameters: 4 -> 64, 10 -> 160.
Loss: squared error summed over the 10 outputs, mean over examples.
Recipe (paper): SGD, lr 5e-4 constant, 100 epochs, no weight decay or momentum; the batch size
is not stated: 1 here (the stochastic setting of the paper's linear-convergence theorem).
The claim: in the overparameterized case both SGD and SAM drive the training loss to zero at a
linear rate (a straight line in log loss vs epoch); at k = 4 the loss stalls at the rank-4
approximation error of A. Measured (quick preset, 1 seed, rho 0.01): k = 10 SGD falls from
~1.5 to float32's floor (~1e-12) within ~10 epochs, a straight line in log scale; SAM (the usual
normalised ascent rho g/||g||) follows it down to ~1e-5 and then hovers there, since its ascent
keeps a length rho at the minimum; k = 4 both stall at 4.71.

    python runners/theory.py matrix-factorization --preset quick
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


@dataclass(frozen=True)
class MatrixFactorizationConfig(TrainConfig):
    in_dim: int = 6
    """columns of A (input dimension)"""
    out_dim: int = 10
    """rows of A (output dimension)"""
    num_train: int = 1_000
    """training examples"""
    num_val: int = 1_000
    """validation examples (fresh draws)"""
    num_test: int = 1_000
    """test examples (fresh draws)"""
    data_seed: int = 0
    """seed of A and the data; the same for every training seed"""
    # the paper's recipe: lr 5e-4, 100 epochs; batch 1 (not stated)
    optimizer: str = "sgd"
    learning_rate: float = 5e-4
    batch_size: int = 1
    num_epochs: int = 100
    rho: float = 0.01
    rho_grid: tuple[float, ...] = (0.01,)


PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    # CPU minutes: batch 10, 10x the LR (the same LR per example), 100 epochs.
    "quick": {"batch_size": 10, "learning_rate": 5e-3},
    "smoke": {"num_train": 100, "num_val": 50, "num_test": 50, "num_epochs": 2, "batch_size": 10},
}


class MatrixFactorization(Workload):
    generator_params = (
        "data_seed",
        "in_dim",
        "out_dim",
        "num_train",
        "num_val",
        "num_test",
    )  # the config fields the data is drawn from
    target = Target("loss", "min")
    widths = (4.0, 10.0)  # rank k (1x = rank 1)
    supports_seed_ensemble = True  # bias-free linear layers: seeds can be vmapped

    def __init__(self, config: MatrixFactorizationConfig) -> None:
        super().__init__(config)
        self.config: MatrixFactorizationConfig = config
        self.data: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.A = torch.empty(0)

    def build_model(self, width: float) -> nn.Module:
        c, k = self.config, scale_width(1, width)
        return nn.Sequential(
            nn.Linear(c.in_dim, k, bias=False), nn.Linear(k, c.out_dim, bias=False)
        )  # (B, 6) -> (B, k) -> (B, 10): V then U

    def setup_data(self, data_root: Path, device: torch.device) -> None:
        c = self.config
        gen = make_generator(c.data_seed, "synthetic-matrix-factorization")
        self.A = torch.randn(c.out_dim, c.in_dim, generator=gen)
        for split, n in (("train", c.num_train), ("val", c.num_val), ("test", c.num_test)):
            x = torch.randn(n, c.in_dim, generator=gen)
            self.data[split] = (x.to(device), (x @ self.A.T).to(device))

    def steps_per_epoch(self) -> int:
        return math.ceil(self.config.num_train / self.config.batch_size)

    def train_batches(self, epoch: int, generator: torch.Generator) -> Iterator[Any]:
        x, y = self.data["train"]
        order = torch.randperm(len(x), generator=generator).to(x.device)
        for idx in order.split(self.config.batch_size):
            yield x[idx], y[idx]

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, y = batch
        return (model(x) - y).pow(2).sum(1).mean(), {}

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        return {f"{s}/loss": self.loss(model, xy)[0].item() for s, xy in self.data.items()}


@register("synthetic-matrix-factorization", domain="synthetic", presets=tuple(PRESETS))
def synthetic_matrix_factorization(preset: str = "quick", **overrides: Any) -> MatrixFactorization:
    """Two-factor linear net U V x fitting y = A x, A 10x6; training loss vs epoch (linear rate)."""
    return MatrixFactorization(
        build_config(MatrixFactorizationConfig, PRESETS, preset, **overrides)
    )
