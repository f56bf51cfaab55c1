"""OGB molecule workloads: parameter counts, the offline rebuild and scaffold split, the
metric, the missing-data error, and the CLI end to end."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from domains import (
    MissingDataError,
    create_workload,
    default_workload,
    list_workloads,
    resolve_data_root,
)
from samcore.width import count_params

pytestmark = pytest.mark.graph

PAPER_MOLPCBA = {1.0: 184_192, 2.0: 695_936, 4.0: 2_702_464}  # PAPERS.md, ogbg-molpcba row

# Three scaffold families (benzene, pyridine, cyclohexane), chain molecules (empty scaffold)
# and singletons: 20 molecules, HIV-style single task with both classes everywhere.
TOY_SMILES = (
    ["c1ccccc1" + s for s in ["C", "CC", "CCC", "O", "N", "CO", "CN", "Cl"]]
    + ["c1ccncc1" + s for s in ["C", "CC", "O", "N"]]
    + ["C1CCCCC1" + s for s in ["C", "O"]]
    + ["CCO", "CCCC", "CC(=O)O"]
    + ["c1ccc2ccccc2c1", "C1CC1", "O=[Al](O)O"]
)


def _write_toy_csv(root: Path) -> Path:
    (root / "moleculenet").mkdir(parents=True)
    labels = [i % 2 for i in range(len(TOY_SMILES))]
    lines = ["smiles,HIV_active"] + [f"{s},{y}" for s, y in zip(TOY_SMILES, labels)]
    path = root / "moleculenet" / "hiv.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_graph_domain_registers_its_workloads():
    names = set(list_workloads(domain="graph"))
    assert {
        "ogbg-molhiv",
        "ogbg-moltox21",
        "ogbg-molpcba",
        "planetoid-cora",
        "planetoid-citeseer",
    } <= names
    assert default_workload("graph") == "ogbg-molhiv"


def test_molpcba_parameter_counts_match_the_paper():
    workload = create_workload("ogbg-molpcba", "paper")
    assert workload.widths == (1.0, 2.0, 4.0)
    with torch.device("meta"):
        counts = {w: count_params(workload.build_model(w)) for w in workload.widths}
    assert counts == PAPER_MOLPCBA


@pytest.mark.parametrize(
    "name", ["ogbg-molhiv", "ogbg-moltox21", "ogbg-molpcba", "planetoid-cora", "planetoid-citeseer"]
)
def test_parameter_count_strictly_increases_with_width(name):
    workload = create_workload(name, "smoke")
    with torch.device("meta"):
        counts = [count_params(workload.build_model(w)) for w in workload.widths]
    assert all(a < b for a, b in zip(counts, counts[1:])), counts


def test_scaffold_split_is_deterministic_disjoint_and_80_10_10():
    from domains.graph.molecule_data import _scaffold, scaffold_split

    first, second = scaffold_split(TOY_SMILES), scaffold_split(TOY_SMILES)
    assert all(np.array_equal(first[k], second[k]) for k in first)
    parts = [set(first[k].tolist()) for k in ("train", "valid", "test")]
    assert set().union(*parts) == set(range(len(TOY_SMILES)))
    assert sum(map(len, parts)) == len(TOY_SMILES)  # disjoint
    # OGB's rule: whole scaffold sets, largest first, train <= 80%, train + valid <= 90%
    assert len(parts[0]) <= 0.8 * len(TOY_SMILES) and len(parts[0]) >= 0.6 * len(TOY_SMILES)
    assert len(parts[0]) + len(parts[1]) <= 0.9 * len(TOY_SMILES)
    assert first["train"].tolist()[:8] == list(range(8))  # the largest (benzene) set is train's
    scaffolds = [{_scaffold(TOY_SMILES[i]) for i in p} for p in parts]
    assert not (
        scaffolds[0] & scaffolds[1] or scaffolds[0] & scaffolds[2] or scaffolds[1] & scaffolds[2]
    )


def test_offline_rebuild_loads_through_ogb(tmp_path):
    from domains.graph.molecule_data import load_ogb_dataset

    _write_toy_csv(tmp_path / "data")
    dataset, split = load_ogb_dataset("ogbg-molhiv", tmp_path / "data", tmp_path / "cache")
    assert len(dataset) == len(TOY_SMILES)
    assert dataset.x.shape[1] == 9 and dataset.edge_attr.shape[1] == 3  # OGB's feature columns
    assert sum(len(v) for v in split.values()) == len(TOY_SMILES)
    # the cache entry is keyed by the CSV's size and mtime (issue 20, finding 3)
    assert len(list((tmp_path / "cache").glob("ogbg_molhiv-*/RELEASE_v1.txt"))) == 1
    g = dataset[0]  # toluene: 7 heavy atoms, 7 bonds, both directions
    assert g.num_nodes == 7 and g.edge_index.shape == (2, 14) and g.y.tolist() == [[0]]
    from ogb.utils import smiles2graph

    for i, smiles in enumerate(TOY_SMILES[:-1]):  # the same graphs as OGB's featuriser, in order
        ref = smiles2graph(smiles)
        assert torch.equal(dataset[i].x, torch.from_numpy(ref["node_feat"]))
        assert torch.equal(dataset[i].edge_index, torch.from_numpy(ref["edge_index"]))
        assert torch.equal(dataset[i].edge_attr, torch.from_numpy(ref["edge_feat"]))
    assert dataset[len(TOY_SMILES) - 1].num_nodes == 4  # O=[Al](O)O: rdkit-rejected, kept
    again, split2 = load_ogb_dataset("ogbg-molhiv", tmp_path / "data", tmp_path / "cache")
    assert len(again) == len(dataset) and torch.equal(split["train"], split2["train"])


def test_ogb_evaluator_rocauc_matches_hand_computation():
    from ogb.graphproppred import Evaluator

    y_true = np.array([[0], [0], [1], [1], [0]])
    y_pred = np.array([[0.1], [0.4], [0.35], [0.8], [0.2]])
    # positives 0.35 and 0.8 against negatives 0.1, 0.4, 0.2: 2/3 and 3/3 pairs ranked right
    hand = (2 + 3) / (2 * 3)
    got = Evaluator("ogbg-molhiv").eval({"y_true": y_true, "y_pred": y_pred})["rocauc"]
    assert got == pytest.approx(hand)


class _FixedLogits(nn.Module):
    """Returns a stored logit per graph (graphs carry their index in ``gid``)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, batch) -> torch.Tensor:
        return self.logits[batch.gid]


def test_workload_evaluate_and_masked_loss_on_known_predictions():
    from ogb.graphproppred import Evaluator
    from torch_geometric.data import Batch, Data

    workload = create_workload("ogbg-moltox21", "smoke")
    y = torch.full((6, 12), float("nan"))
    y[:, 0] = torch.tensor([0.0, 0, 1, 1, 0, 1])  # only task 0 labelled
    logits = torch.zeros(6, 12)
    logits[:, 0] = torch.tensor([-2.0, 1.0, 0.5, 3.0, -1.0, -3.0])
    graphs = [
        Data(
            x=torch.zeros(1, 9, dtype=torch.long),
            edge_index=torch.zeros(2, 0, dtype=torch.long),
            y=y[i : i + 1],
            gid=torch.tensor([i]),
        )
        for i in range(6)
    ]
    workload.eval_splits = {"train": graphs, "val": graphs, "test": graphs}
    workload.evaluator = Evaluator("ogbg-moltox21")
    out = workload.evaluate(_FixedLogits(logits))
    # positives 0.5, 3, -3 vs negatives -2, 1, -1: 2 + 3 + 0 of 9 pairs
    assert out["val/rocauc"] == pytest.approx(5 / 9) and out["test/rocauc"] == out["val/rocauc"]
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], y[:, 0])
    assert out["train/loss"] == pytest.approx(bce.item(), rel=1e-6)
    loss, _ = workload.loss(_FixedLogits(logits), Batch.from_data_list(graphs))
    assert loss.item() == pytest.approx(bce.item(), rel=1e-6)  # NaN labels are masked out


def test_molpcba_missing_offline_names_the_data_set_and_how_to_get_it(tmp_path):
    workload = create_workload(
        "ogbg-molpcba", "quick", cache_dir=str(tmp_path / "cache"), download=False
    )
    with pytest.raises(MissingDataError) as info:
        workload.setup_data(tmp_path / "data", torch.device("cpu"))
    message = str(info.value)
    assert "ogbg-molpcba" in message and str(tmp_path / "data") in message
    assert "internet" in message and "pcba.zip" in message


def _store_rows(results: Path) -> tuple[list[tuple], int]:
    with sqlite3.connect(results / "runs.sqlite") as db:
        runs = db.execute("SELECT workload, optimizer, width, status FROM runs").fetchall()
        metrics = db.execute("SELECT COUNT(*) FROM metrics").fetchone()[0]
    return runs, metrics


def test_cli_smoke_runs_base_and_sam(cli, tmp_path):
    proc = cli(
        [
            "--domain",
            "graph",
            "--preset",
            "smoke",
            "--results",
            str(tmp_path / "res"),
            "--no-progress",
        ]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs, metrics = _store_rows(tmp_path / "res")
    assert sorted(r[1] for r in runs) == ["adam", "sam"]
    assert all(r[0] == "ogbg-molhiv" and r[3] == "done" for r in runs) and metrics > 0
    assert "val/rocauc" in proc.stdout
    # issue 20: no library deprecation lines (PyG's torch.jit.script FutureWarning) on success
    assert "Warning" not in proc.stderr and "deprecated" not in proc.stderr, proc.stderr


def test_cli_width_4x_smoke(cli, tmp_path):
    # the issue's `run.py --domain graph --width 4x`, base optimizer only to stay fast on CPU
    proc = cli(
        [
            "--domain",
            "graph",
            "--width",
            "4x",
            "--preset",
            "smoke",
            "--optimizer",
            "base",
            "--results",
            str(tmp_path / "res"),
            "--no-progress",
        ]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs, metrics = _store_rows(tmp_path / "res")
    assert runs == [("ogbg-molhiv", "adam", 4.0, "done")] and metrics > 0
    assert "2,637,313" in proc.stdout  # latent 512, one task


@pytest.mark.slow
def test_full_molhiv_rebuild_matches_ogb(shared_data):
    """The full offline ogbg-molhiv: OGB's graph count, feature columns and split sizes.

    Uses the user cache (builds it once, ~5 min on one core, if it is not there yet)."""
    from domains.graph.common import graph_cache_dir
    from domains.graph.molecule_data import _scaffold, load_ogb_dataset

    dataset, split = load_ogb_dataset("ogbg-molhiv", shared_data, graph_cache_dir())
    assert len(dataset) == 41_127
    assert dataset.x.shape[1] == 9 and dataset.edge_attr.shape[1] == 3
    assert {k: len(v) for k, v in split.items()} == {"train": 32_901, "valid": 4_113, "test": 4_113}
    parts = [set(split[k].tolist()) for k in ("train", "valid", "test")]
    assert sum(map(len, parts)) == len(set().union(*parts)) == 41_127
    import pandas as pd

    smiles = pd.read_csv(shared_data / "moleculenet" / "hiv.csv")["smiles"].tolist()
    scaffolds = [{_scaffold(smiles[i]) for i in p} for p in parts]
    assert not (scaffolds[0] & scaffolds[1] or scaffolds[0] & scaffolds[2])
    assert not scaffolds[1] & scaffolds[2]


def test_accumulation_over_graph_chunks_equals_the_big_batch():
    """split_batch weights chunks by labelled entries, so accumulated SAM equals one pass."""
    import copy

    from samcore import SAM, train_step

    workload = create_workload("ogbg-moltox21", "smoke", dropout=0.0)  # tox21: missing labels
    try:
        workload.setup_data(resolve_data_root(None), torch.device("cpu"))
    except MissingDataError as exc:
        pytest.skip(str(exc))
    batch = next(iter(workload.train_batches(0, torch.Generator().manual_seed(0))))
    torch.manual_seed(0)
    m1 = workload.build_model(1.0)
    m2 = copy.deepcopy(m1)
    o1 = SAM(m1.parameters(), torch.optim.Adam, rho=0.05, lr=1e-3)
    o2 = SAM(m2.parameters(), torch.optim.Adam, rho=0.05, lr=1e-3)
    r1 = train_step(m1, o1, workload.loss, batch)
    r2 = train_step(m2, o2, workload.loss, batch, micro_batch_size=40, split=workload.split_batch)
    torch.testing.assert_close(r1.loss, r2.loss, rtol=1e-5, atol=1e-6)
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(p1, p2, rtol=1e-4, atol=1e-6)
