"""OGB molecular property prediction with the paper's GCN (Fig. 1, ogbg-molpcba).

Task: multi-task binary classification of molecules (ogbg-molpcba 128 tasks, ogbg-molhiv 1,
ogbg-moltox21 12), missing labels masked. Data: OGB's scaffold splits; molhiv and moltox21 are
rebuilt offline from the held MoleculeNet CSVs (``molecule_data.py``), molpcba must be
downloaded. Metric: OGB's ``Evaluator`` (mean AP for molpcba, ROC-AUC otherwise), x1 (not x100).
Model: AlgoPerf's ogbg GCN as the paper uses it (Shin et al., UAI 2025, appendix A): node
features -> Dense(latent); 5 graph-convolution steps, each a 2-layer node MLP with LayerNorm,
ReLU and dropout 0.1 whose output is summed over neighbours and self with symmetric degree
normalisation (Jraph ``GraphConvolution``, add_self_edges, undirected edges), plus a skip
connection; mean pooling; Dense(num_tasks) logits. No virtual node; edge features unused (a
graph convolution has no edge update). Latent 128/256/512 = widths 1x/2x/4x.

Parameter count: 10 L^2 + (30 + T) L + T for latent L and T tasks, i.e. embedding 10L,
5 x (two L x L Dense with bias + one LayerNorm) = 5 x (2L^2 + 4L), decoder (L + 1) T. For
molpcba (T = 128) that is 184,192 / 695,936 / 2,702,464, exactly the paper's numbers (the
quadratic through the paper's three counts is 10 L^2 + 158 L + 128, which fixes this layout).
The LayerNorm's place inside the MLP (after the first Dense) is our reading; it does not change
the count. Paper: Adam 19.74 / 21.67 / 21.57, SAM 19.61 / 21.90 / 22.04 (val AP x100, 100k steps).

    python runners/run.py --domain graph --width 1x,2x,4x --optimizer both --preset quick
    python runners/run.py --workload ogbg-molpcba --preset paper --width all   # needs download
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

from domains.graph.common import graph_cache_dir, require_graph_extra
from domains.registry import register
from domains.workload import Target, TrainConfig, Workload, build_config
from samcore.width import scale_width

NUM_ATOM_FEATURES = 9  # ogb.utils.features: atomic number, chirality, degree, charge, ...
# OGB name -> (number of tasks, Evaluator metric); also in OGB's master.csv, kept here so that
# building a model (run.py --list, parameter counts) needs no OGB import.
TASKS = {"ogbg-molpcba": (128, "ap"), "ogbg-molhiv": (1, "rocauc"), "ogbg-moltox21": (12, "rocauc")}


@dataclass(frozen=True)
class MolConfig(TrainConfig):
    dataset: str = "ogbg-molhiv"
    """OGB data set name: ogbg-molhiv | ogbg-moltox21 | ogbg-molpcba"""
    base_latent: int = 128
    """latent (node) size at width 1x; the paper's grid is 128 / 256 / 512"""
    num_message_passing_steps: int = 5
    """graph-convolution steps"""
    dropout: float = 0.1
    """dropout after each hidden ReLU and on each step's output"""
    max_molecules: int = 0
    """rebuild from the first N CSV molecules only, split recomputed (0 = all; offline sets)"""
    cache_dir: str = ""
    """writable folder for built data sets ('' = $XDG_CACHE_HOME/sam-overparam/graph)"""
    download: bool = True
    """let OGB download the set when no local copy or CSV is found"""
    eval_batch_size: int = 1024
    """graphs per evaluation batch"""
    optimizer: str = "adam"
    """base optimizer: Adam (the paper's recipe, AlgoPerf ogbg)"""
    learning_rate: float = 1e-3
    """constant Adam learning rate"""
    weight_decay: float = 0.0
    """none, as the paper"""
    batch_size: int = 256
    """graphs per step"""
    num_epochs: int = 100
    """epochs; molpcba's paper preset: 73 (x 1,369 steps = the paper's ~100k steps)"""
    rho: float = 0.05
    """default SAM radius"""
    rho_grid: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2)
    """rho grid (not stated in the paper for ogbg): the suite's default grid"""


PRESETS: dict[str, dict[str, Any]] = {
    # molpcba: 100k steps of 256 = 73 epochs of 350,343 graphs; molhiv/moltox21: OGB's 100 epochs
    "paper": {},
    # CPU minutes (~10 on one core): the first 8,192 molecules (6,553 / 819 / 820 by scaffold),
    # 3 epochs; base vs SAM at 1x, 2x, 4x. Molpcba has no CSV subset: use the paper preset.
    "quick": {"max_molecules": 8192, "num_epochs": 3},
    # Seconds: the first 1,024 molecules (each scaffold split keeps HIV positives), 1 epoch
    "smoke": {"max_molecules": 1024, "num_epochs": 1, "batch_size": 128},
}


# ---------------------------------------------------------------------------------- model
class _GCNStep(nn.Module):
    """h + Aggregate(MLP(h)): Jraph GraphConvolution(update_node_fn=MLP) with a skip.

    The MLP's second Dense is GCNConv's own linear map (no bias), applied before the
    normalised sum over neighbours and self, GCNConv's bias after it: 2L^2 + 4L parameters.
    """

    def __init__(self, latent: int, dropout: float) -> None:
        from torch_geometric.nn import GCNConv

        super().__init__()
        self.dense = nn.Linear(latent, latent)
        self.norm = nn.LayerNorm(latent)
        self.conv = GCNConv(latent, latent, add_self_loops=True, normalize=True)
        self.dropout = dropout

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        z = F.relu(self.norm(self.dense(h)))  # (N, L)
        z = F.dropout(z, self.dropout, self.training)
        z = self.conv(z, edge_index)  # D^-1/2 (A + I) D^-1/2 z W + b, (N, L)
        return h + F.dropout(z, self.dropout, self.training)


class MolGCN(nn.Module):
    def __init__(self, latent: int, num_tasks: int, num_steps: int, dropout: float) -> None:
        super().__init__()
        # AlgoPerf embeds OGB's raw integer atom features, as floats, with one Dense layer
        self.embed = nn.Linear(NUM_ATOM_FEATURES, latent)
        self.steps = nn.ModuleList(_GCNStep(latent, dropout) for _ in range(num_steps))
        self.decoder = nn.Linear(latent, num_tasks)
        for m in self.modules():
            # Flax's Dense default (AlgoPerf's model): LeCun-normal weights, zero biases.
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(
                    m.weight,
                    std=1 / math.sqrt(m.in_features),
                    a=-2 / math.sqrt(m.in_features),
                    b=2 / math.sqrt(m.in_features),
                )
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for step in self.steps:  # GCNConv keeps its weight in .lin, its bias outside
            nn.init.zeros_(step.conv.bias)

    def forward(self, batch: Any) -> torch.Tensor:
        from torch_geometric.nn import global_mean_pool

        h = self.embed(batch.x.float())  # (N, 9) -> (N, L)
        for step in self.steps:
            h = step(h, batch.edge_index)
        return self.decoder(global_mean_pool(h, batch.batch))  # (G, L) -> (G, T) logits


# ------------------------------------------------------------------------------- workload
class OgbgMolecules(Workload):
    widths = (1.0, 2.0, 4.0)  # latent 128, 256, 512

    def __init__(self, config: MolConfig) -> None:
        super().__init__(config)
        self.config: MolConfig = config
        if config.dataset not in TASKS:
            raise ValueError(f"dataset must be one of {sorted(TASKS)}, got {config.dataset!r}")
        self.num_tasks, metric = TASKS[config.dataset]
        self.target = Target(metric, "max")
        self.splits: dict[str, Any] = {}
        self.eval_splits: dict[str, Any] = {}
        self.device = torch.device("cpu")

    def build_model(self, width: float) -> nn.Module:
        require_graph_extra("torch_geometric")
        c = self.config
        return MolGCN(
            scale_width(c.base_latent, width),
            self.num_tasks,
            c.num_message_passing_steps,
            c.dropout,
        )

    def setup_data(self, data_root: Path, device: torch.device) -> None:
        require_graph_extra("torch_geometric", "ogb", "rdkit", "pandas")
        from ogb.graphproppred import Evaluator

        from domains.graph.molecule_data import load_ogb_dataset

        c = self.config
        dataset, split = load_ogb_dataset(
            c.dataset, data_root, graph_cache_dir(c.cache_dir), c.max_molecules, c.download
        )
        # OGB calls the validation split "valid"; our metric keys say "val".
        self.splits = {
            "train": dataset[split["train"]],
            "val": dataset[split["valid"]],
            "test": dataset[split["test"]],
        }
        # train/loss on a fixed slice of the training set as large as the validation set
        # (AlgoPerf's num_train_eval rule): evaluating all 350k molpcba graphs every epoch
        # would cost a quarter of the training itself.
        self.eval_splits = {
            "train": self.splits["train"][: len(self.splits["val"])],
            "val": self.splits["val"],
            "test": self.splits["test"],
        }
        self.evaluator = Evaluator(c.dataset)
        self.device = device

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.splits["train"]) / self.config.batch_size)

    def train_batches(self, epoch: int, generator: torch.Generator) -> Iterator[Any]:
        from torch_geometric.loader import DataLoader

        loader = DataLoader(
            self.splits["train"],
            batch_size=self.config.batch_size,
            shuffle=True,
            generator=generator,
        )
        for batch in loader:
            yield batch.to(self.device)

    def split_batch(self, batch: Any, size: int) -> list[tuple[Any, float]]:
        """Chunks of ``size`` graphs for accumulation / m-sharpness. Weights are each chunk's
        share of the batch's labelled (graph, task) entries, because ``loss`` averages over
        those: sum_k weight_k * loss(chunk_k) is exactly loss(batch)."""
        from torch_geometric.data import Batch

        n = batch.num_graphs
        labelled = (~torch.isnan(batch.y.float())).sum(dim=1)  # (G,) labelled tasks per graph
        total = labelled.sum().clamp(min=1)
        chunks = []
        for s in range(0, n, size):
            idx = torch.arange(s, min(s + size, n))
            chunk = Batch.from_data_list(batch.index_select(idx)).to(self.device)
            chunks.append((chunk, (labelled[idx].sum() / total).item()))
        return chunks

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = model(batch)  # (G, T)
        y = batch.y.float()  # (G, T); NaN = no label for this task
        labelled = ~torch.isnan(y)
        loss = F.binary_cross_entropy_with_logits(logits[labelled], y[labelled])
        return loss, {"labelled_fraction": labelled.float().mean().detach()}

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        from torch_geometric.loader import DataLoader

        out: dict[str, float] = {}
        for split, data in self.eval_splits.items():
            logits, ys = [], []
            for batch in DataLoader(data, batch_size=self.config.eval_batch_size):
                batch = batch.to(self.device)
                logits.append(model(batch).float().cpu())
                ys.append(batch.y.float().cpu())
            y_pred, y_true = torch.cat(logits), torch.cat(ys)
            labelled = ~torch.isnan(y_true)
            out[f"{split}/loss"] = F.binary_cross_entropy_with_logits(
                y_pred[labelled], y_true[labelled]
            ).item()
            if split != "train":  # OGB's evaluator (logits rank like probabilities)
                name = self.target.name
                res = self.evaluator.eval({"y_true": y_true.numpy(), "y_pred": y_pred.numpy()})
                out[f"{split}/{name}"] = float(res[name])
        return out


def _create(dataset: str, preset: str, overrides: dict[str, Any]) -> OgbgMolecules:
    presets = {k: {"dataset": dataset, **v} for k, v in PRESETS.items()}
    if dataset == "ogbg-molpcba":
        presets["paper"]["num_epochs"] = 73  # 73 x 1,369 = 99,937 steps, the paper's 100k
    return OgbgMolecules(build_config(MolConfig, presets, preset, **overrides))


@register("ogbg-molhiv", domain="graph", presets=tuple(PRESETS), default=True)
def ogbg_molhiv(preset: str = "quick", **overrides: Any) -> OgbgMolecules:
    """GCN on ogbg-molhiv (rebuilt offline from MoleculeNet HIV), ROC-AUC."""
    return _create("ogbg-molhiv", preset, overrides)


@register("ogbg-moltox21", domain="graph", presets=tuple(PRESETS))
def ogbg_moltox21(preset: str = "quick", **overrides: Any) -> OgbgMolecules:
    """GCN on ogbg-moltox21 (rebuilt offline from MoleculeNet Tox21), mean ROC-AUC."""
    return _create("ogbg-moltox21", preset, overrides)


@register("ogbg-molpcba", domain="graph", presets=tuple(PRESETS))
def ogbg_molpcba(preset: str = "quick", **overrides: Any) -> OgbgMolecules:
    """The paper's GCN on ogbg-molpcba (download only), mean AP (paper Fig. 1)."""
    return _create("ogbg-molpcba", preset, overrides)
