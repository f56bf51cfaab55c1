"""Planetoid node classification (Cora, CiteSeer) with Kipf & Welling's 2-layer GCN.

Task: classify the papers of a citation graph from bag-of-words features, transductive, on the
public Planetoid split (Cora: 2,708 nodes, 7 classes, 140 / 500 / 1,000 train / val / test
nodes; CiteSeer: 3,327 nodes, 6 classes, 120 / 500 / 1,000). Data: PyG's ``Planetoid`` reading
the held raw files (copied into a writable cache, since PyG writes ``processed/`` beside them),
or downloading them. Model: GCNConv(F, h) -> ReLU -> GCNConv(h, C), dropout 0.5 on the input
of both layers, row-normalised features (Kipf & Welling, ICLR 2017). Metric: accuracy.
Width: hidden size h = 16 * {1, 2, 4, 8, 16, 32} (16 = Kipf & Welling's; not a paper workload:
this grid extends the suite's width question to node classification).
Recipe (Kipf & Welling): Adam lr 0.01, 200 epochs, full-batch (one step per epoch), L2 5e-4
on the first layer's weights only, added to the loss as in their code (weight_decay * l2_loss,
i.e. wd/2 * ||W1||^2) rather than the optimizer's weight decay on every parameter. Reference:
GCN 81.5% (Cora), 70.3% (CiteSeer) test accuracy (their Table 2); they stop early on val loss,
we select the epoch by val accuracy (the runner's rule).

    python runners/run.py --workload planetoid-cora --width 1x,4x,32x --optimizer both
"""

from __future__ import annotations

import pickle
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from domains.cache import build_once
from domains.data_check import DataError, source_key, verify_all
from domains.graph.common import graph_cache_dir, require_graph_extra
from domains.registry import register
from domains.workload import MissingDataError, Target, TrainConfig, Workload, build_config
from samcore.width import scale_width

# name -> (node features, classes, public-split training nodes); fixed by the data sets
SHAPES = {"Cora": (1433, 7, 140), "CiteSeer": (3703, 6, 120)}


@dataclass(frozen=True)
class PlanetoidConfig(TrainConfig):
    dataset: str = "Cora"
    """Planetoid data set: Cora | CiteSeer"""
    base_hidden: int = 16
    """hidden units at width 1x (Kipf & Welling's 16)"""
    dropout: float = 0.5
    """dropout on the input of each GCN layer"""
    l2_first_layer: float = 5e-4
    """Kipf & Welling's weight decay: adds l2 * ||W1||^2 / 2 to the loss (first layer only)"""
    cache_dir: str = ""
    """writable folder for the copied data ('' = $XDG_CACHE_HOME/sam-overparam/graph)"""
    optimizer: str = "adam"
    """base optimizer (Kipf & Welling: Adam)"""
    learning_rate: float = 0.01
    """constant Adam learning rate"""
    weight_decay: float = 0.0
    """optimizer weight decay; 0, as the L2 term is in the loss (l2_first_layer)"""
    batch_size: int = 140
    """training nodes per step: the whole public training split (full batch)"""
    num_epochs: int = 200
    """full-batch steps (one per epoch)"""
    rho: float = 0.05
    """default SAM radius"""
    rho_grid: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2)
    """the suite's default rho grid (no paper grid for this workload)"""


PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},  # Kipf & Welling's recipe
    "quick": {"num_epochs": 100},  # CPU seconds per run
    "smoke": {"num_epochs": 3},
}


class GCN(nn.Module):
    """Two GCNConv layers: (N, F) -> (N, h) -> (N, C) logits."""

    def __init__(self, in_features: int, hidden: int, classes: int, dropout: float) -> None:
        from torch_geometric.nn import GCNConv

        super().__init__()
        # Glorot weights, zero bias (PyG's default = Kipf's). cached: one fixed graph
        # (transductive), so D^-1/2 (A + I) D^-1/2 is computed once, as Kipf precomputes it.
        self.conv1 = GCNConv(in_features, hidden, cached=True)
        self.conv2 = GCNConv(hidden, classes, cached=True)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        x = F.dropout(x, self.dropout, self.training)
        x = F.relu(self.conv1(x, edge_index))
        x = F.dropout(x, self.dropout, self.training)
        return self.conv2(x, edge_index)


class PlanetoidNodes(Workload):
    target = Target("acc", "max", unit="accuracy", scale="fraction")
    widths = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)  # hidden 16 ... 512

    def __init__(self, config: PlanetoidConfig) -> None:
        super().__init__(config)
        self.config: PlanetoidConfig = config
        if config.dataset not in SHAPES:
            raise ValueError(f"dataset must be one of {sorted(SHAPES)}, got {config.dataset!r}")
        self.data: Any = None

    def build_model(self, width: float) -> nn.Module:
        require_graph_extra("torch_geometric")
        features, classes, _ = SHAPES[self.config.dataset]
        hidden = scale_width(self.config.base_hidden, width)
        return GCN(features, hidden, classes, self.config.dropout)

    def setup_data(self, data_root: Path, device: torch.device) -> None:
        require_graph_extra("torch_geometric")
        import torch_geometric.transforms as T
        from torch_geometric.datasets import Planetoid

        name = self.config.dataset
        held = data_root / "planetoid" / name / "raw"
        sources = sorted(held.glob(f"ind.{name.lower()}.*")) if held.is_dir() else []
        verify_all(sources)  # damaged canonical files are refused before PyG reads them
        self.data_files = tuple(sources)  # stored with each run (data identity)
        # keyed by the raw files' sizes and mtimes: a repaired file gets a fresh processed copy
        cache = graph_cache_dir(self.config.cache_dir) / "planetoid" / source_key(sources)

        def build(staging: Path) -> Path:
            if held.is_dir():
                shutil.copytree(held, staging / name / "raw")  # PyG writes processed/ beside raw/
            Planetoid(str(staging), name, split="public")  # downloads raw/ if absent, processes
            return staging / name

        try:
            # one process builds (a sweep's workers start together), the others wait
            build_once(cache / name, build, lambda p: (p / "processed" / "data.pt").is_file())
            dataset = Planetoid(str(cache), name, split="public", transform=T.NormalizeFeatures())
        except (EOFError, ValueError, UnicodeDecodeError, pickle.UnpicklingError) as exc:
            # a truncated or foreign ind.* file (with SAM_DATA_UNCHECKED=1): one line
            raise DataError(
                f"{held}: PyG cannot read the Planetoid {name} files "
                f"({type(exc).__name__}: {' '.join(str(exc).split())[:160]})"
            ) from None
        except OSError as exc:  # offline and not held: the download failed
            raise MissingDataError(
                f"Planetoid {name}",
                f"{held} and {cache / name}",
                "run once with internet access (PyG's Planetoid downloads it), or put the "
                f"ind.{name.lower()}.* files in {held}",
            ) from exc
        self.data = dataset[0].to(device)

    def steps_per_epoch(self) -> int:
        return 1  # full batch

    def train_batches(self, epoch: int, generator: torch.Generator) -> Iterator[Any]:
        yield self.data  # the whole graph; the loss reads the training mask

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = model(batch.x, batch.edge_index)  # (N, C)
        nll = F.cross_entropy(logits[batch.train_mask], batch.y[batch.train_mask])
        l2 = 0.5 * model.conv1.lin.weight.pow(2).sum()  # tf.nn.l2_loss of the first layer
        return nll + self.config.l2_first_layer * l2, {"nll": nll.detach()}

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        d = self.data
        logits = model(d.x, d.edge_index)
        out = {}
        for split, mask in (("train", d.train_mask), ("val", d.val_mask), ("test", d.test_mask)):
            out[f"{split}/loss"] = F.cross_entropy(logits[mask], d.y[mask]).item()
            out[f"{split}/acc"] = (logits[mask].argmax(-1) == d.y[mask]).float().mean().item()
        return out


def _create(dataset: str, preset: str, overrides: dict[str, Any]) -> PlanetoidNodes:
    base = {"dataset": dataset, "batch_size": SHAPES[dataset][2]}
    presets = {k: base | v for k, v in PRESETS.items()}
    return PlanetoidNodes(build_config(PlanetoidConfig, presets, preset, **overrides))


@register("planetoid-cora", domain="graph", presets=tuple(PRESETS))
def planetoid_cora(preset: str = "quick", **overrides: Any) -> PlanetoidNodes:
    """2-layer GCN node classification on Cora (public split), accuracy."""
    return _create("Cora", preset, overrides)


@register("planetoid-citeseer", domain="graph", presets=tuple(PRESETS))
def planetoid_citeseer(preset: str = "quick", **overrides: Any) -> PlanetoidNodes:
    """2-layer GCN node classification on CiteSeer (public split), accuracy."""
    return _create("CiteSeer", preset, overrides)
