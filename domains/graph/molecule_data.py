"""OGB molecule data sets (ogbg-mol*): found, downloaded, or rebuilt offline, then loaded by OGB.

Offline rebuild. OGB's ``ogbg-molhiv`` and ``ogbg-moltox21`` are MoleculeNet's HIV and Tox21
CSVs turned into graphs by ``ogb.utils.smiles2graph`` (rdkit; 9 atom and 3 bond feature
columns) and split by Bemis-Murcko scaffold, 80/10/10 (OGB's rule, from Hu et al.'s
pretrain-gnns ``scaffold_split``: scaffolds with chirality, scaffold sets sorted by
(size, largest index) descending, each set put whole into train, else valid, else test).
``write_ogb_layout`` writes exactly the folder OGB's zip would unpack
(``raw/*.csv.gz``, ``split/scaffold/*.csv.gz``, ``mapping/mol.csv.gz``, ``RELEASE_v1.txt``) into a
cache, once; ``load_ogb_dataset`` then reads it with OGB's own ``PygGraphPropPredDataset``, the
same code path as a downloaded copy.

One difference from OGB's files: the rdkit here rejects a few SMILES that OGB's (2019) rdkit
accepted (hypervalent Al/B: 7 in HIV, 8 in Tox21). Those are parsed without the valence check
(``_mol_from_smiles``) and featurised by the same OGB functions, so every molecule is kept
(41,127 HIV graphs, as OGB) rather than silently dropped.

Known traps handled here: OGB asks on stdin whether to "update" a folder that lacks its
``RELEASE_v1.txt`` (we write the marker last, build in a staging folder and rename it, one
process at a time: ``domains.cache.build_once``, and answer "no" through a scoped stdin);
OGB 1.3.x calls ``torch.load`` without ``weights_only``, which torch >= 2.6 rejects for PyG
``Data`` objects (we allow exactly PyG's data classes with a scoped
``torch.serialization.safe_globals``).
"""

from __future__ import annotations

import contextlib
import io
import shutil
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from domains.cache import build_once
from domains.data_check import DataError, source_key, verify
from domains.workload import MissingDataError

__all__ = [
    "MOLECULENET_CSV",
    "scaffold_split",
    "write_ogb_layout",
    "load_ogb_dataset",
    "ogb_meta",
]

# OGB name -> the held MoleculeNet CSV it is built from (``<data_root>/moleculenet/<file>``).
MOLECULENET_CSV = {"ogbg-molhiv": "hiv.csv", "ogbg-moltox21": "tox21.csv"}
_RELEASE = "RELEASE_v1.txt"  # OGB's version marker for every ogbg-mol* set (master.csv: version 1)


def _mol_from_smiles(smiles: str) -> Any:
    """rdkit molecule; SMILES that modern rdkit's valence check rejects are kept unsanitised."""
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    if mol is not None:
        return mol
    mol = Chem.MolFromSmiles(smiles, sanitize=False)
    if mol is None:
        raise ValueError(f"rdkit cannot parse SMILES {smiles!r}")
    mol.UpdatePropertyCache(strict=False)
    flags = Chem.SanitizeFlags.SANITIZE_ALL ^ Chem.SanitizeFlags.SANITIZE_PROPERTIES
    Chem.SanitizeMol(mol, flags, catchErrors=True)  # aromaticity, hybridisation; no valence check
    return mol


def _smiles_to_graph(smiles: str) -> dict[str, np.ndarray]:
    """``ogb.utils.smiles2graph``; for rdkit-rejected SMILES, the same featurisation by hand."""
    from ogb.utils import smiles2graph
    from ogb.utils.features import atom_to_feature_vector, bond_to_feature_vector
    from rdkit import Chem

    if Chem.MolFromSmiles(smiles) is not None:
        return smiles2graph(smiles)
    mol = _mol_from_smiles(smiles)
    x = np.array([atom_to_feature_vector(a) for a in mol.GetAtoms()], dtype=np.int64)
    edges, feats = [], []
    for b in mol.GetBonds():  # both directions, interleaved, as smiles2graph
        i, j, f = b.GetBeginAtomIdx(), b.GetEndAtomIdx(), bond_to_feature_vector(b)
        edges += [(i, j), (j, i)]
        feats += [f, f]
    return {
        "node_feat": x,
        "edge_index": np.array(edges, dtype=np.int64).reshape(-1, 2).T,
        "edge_feat": np.array(feats, dtype=np.int64).reshape(-1, 3),
        "num_nodes": len(x),
    }


def _scaffold(smiles: str) -> str:
    """Bemis-Murcko scaffold SMILES with chirality (rdkit ``MurckoScaffoldSmiles``)."""
    from rdkit import Chem
    from rdkit.Chem.Scaffolds import MurckoScaffold

    mol = _mol_from_smiles(smiles)
    try:
        return MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=True)
    except Exception:  # noqa: BLE001  rdkit valence errors: the same steps, non-strict
        core = Chem.MurckoDecompose(mol)
        core.UpdatePropertyCache(strict=False)
        Chem.GetSymmSSSR(core)
        return Chem.MolToSmiles(core, isomericSmiles=True)


def scaffold_split(
    smiles: list[str], frac_train: float = 0.8, frac_valid: float = 0.1
) -> dict[str, np.ndarray]:
    """OGB's scaffold split (pretrain-gnns ``splitters.scaffold_split``), deterministic."""
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")
    scaffolds: dict[str, list[int]] = {}
    for i, s in enumerate(smiles):
        scaffolds.setdefault(_scaffold(s), []).append(i)
    # largest scaffold sets first; ties broken by the set's last index, larger first
    sets = sorted(scaffolds.values(), key=lambda v: (len(v), v[-1]), reverse=True)
    train_cut, valid_cut = frac_train * len(smiles), (frac_train + frac_valid) * len(smiles)
    split: dict[str, list[int]] = {"train": [], "valid": [], "test": []}
    for group in sets:
        if len(split["train"]) + len(group) <= train_cut:
            split["train"] += group
        elif len(split["train"]) + len(split["valid"]) + len(group) <= valid_cut:
            split["valid"] += group
        else:
            split["test"] += group
    return {k: np.array(sorted(v), dtype=np.int64) for k, v in split.items()}


def write_ogb_layout(csv_path: Path, out_dir: Path, max_molecules: int = 0) -> None:
    """Write OGB's on-disk layout for the molecules of ``csv_path`` (first ``max_molecules``)."""
    import pandas as pd
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")
    try:
        df = pd.read_csv(csv_path)
    except (ValueError, UnicodeDecodeError) as exc:  # empty file, bad bytes, ragged rows
        reason = " ".join(str(exc).split())[:200]
        raise DataError(f"{csv_path}: not a readable CSV ({reason})") from None
    if "smiles" not in df.columns or len(df.columns) < 2:
        raise DataError(
            f"{csv_path}: columns {list(df.columns)[:5]}, expected 'smiles' and task columns"
        )
    tasks = df.drop(columns=["smiles"])
    bad = (
        tasks.apply(pd.to_numeric, errors="coerce").isna() & tasks.notna()
    )  # not empty, not a number
    if bad.to_numpy().any():
        row, col = next(zip(*bad.to_numpy().nonzero()))
        raise DataError(
            f"{csv_path}: line {row + 2}: label {df.iloc[row, col + 1]!r} in column "
            f"{df.columns[col + 1]!r} is not a number"
        )
    if max_molecules:
        df = df.iloc[:max_molecules].reset_index(drop=True)
    smiles = df["smiles"].tolist()
    labels = df.drop(columns=["smiles"])  # task columns; empty cells -> NaN (missing label)
    graphs = [_smiles_to_graph(s) for s in smiles]

    def save(rel: str, frame: pd.DataFrame) -> None:
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, index=False, header=False, compression="gzip")

    # OGB's raw files hold one direction per bond (read_graph adds the inverse edge back).
    save(
        "raw/edge.csv.gz",
        pd.DataFrame(
            np.concatenate(
                [g["edge_index"][:, 0::2].T for g in graphs] + [np.empty((0, 2), np.int64)]
            )
        ),
    )
    save(
        "raw/edge-feat.csv.gz",
        pd.DataFrame(
            np.concatenate([g["edge_feat"][0::2] for g in graphs] + [np.empty((0, 3), np.int64)])
        ),
    )
    save("raw/node-feat.csv.gz", pd.DataFrame(np.concatenate([g["node_feat"] for g in graphs])))
    save("raw/num-node-list.csv.gz", pd.DataFrame([g["num_nodes"] for g in graphs]))
    save("raw/num-edge-list.csv.gz", pd.DataFrame([g["edge_index"].shape[1] // 2 for g in graphs]))
    has_nan = labels.isna().to_numpy().any()
    save("raw/graph-label.csv.gz", labels if has_nan else labels.astype(np.int64))
    for part, idx in scaffold_split(smiles).items():
        save(f"split/scaffold/{part}.csv.gz", pd.DataFrame(idx))
    mapping = out_dir / "mapping" / "mol.csv.gz"
    mapping.parent.mkdir(parents=True, exist_ok=True)
    df.assign(mol_id=np.arange(len(df))).to_csv(mapping, index=False, compression="gzip")
    (out_dir / _RELEASE).write_text("offline rebuild from " + csv_path.name + "\n")  # last


def ogb_meta(name: str) -> dict[str, str]:
    """OGB's master.csv column for ``name`` (task count, metric, url, ...)."""
    import pandas as pd
    from ogb.graphproppred import dataset_pyg

    master = pd.read_csv(
        Path(dataset_pyg.__file__).parent / "master.csv", index_col=0, keep_default_na=False
    )
    if name not in master:
        raise ValueError(f"{name!r} is not an OGB graph property data set")
    return dict(master[name])


@contextlib.contextmanager
def _ogb_guard() -> Iterator[None]:
    """Scoped fixes for OGB 1.3.x: never read stdin; torch.load of PyG data under torch>=2.6;
    no warning of OGB's about its own read-only label arrays."""
    import torch
    from torch_geometric.data.data import Data, DataEdgeAttr, DataTensorAttr
    from torch_geometric.data.storage import GlobalStorage

    old_stdin = sys.stdin
    sys.stdin = io.StringIO("n\n")  # "Will you update the dataset now? (y/N)" -> N, never blocks
    try:
        with (
            torch.serialization.safe_globals([Data, DataEdgeAttr, DataTensorAttr, GlobalStorage]),
            warnings.catch_warnings(),
        ):
            # OGB's processing calls torch.from_numpy on a read-only label array
            # (ogb/graphproppred/dataset_pyg.py): "UserWarning: The given NumPy array is not
            # writable"; the tensors are only read, so the warning is not the user's business.
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            yield
    finally:
        sys.stdin = old_stdin


def _open(name: str, folder: Path) -> Any:
    from ogb.graphproppred import PygGraphPropPredDataset

    meta = ogb_meta(name) | {"dir_path": str(folder)}
    with _ogb_guard():
        return PygGraphPropPredDataset(name, meta_dict=meta)


def load_ogb_dataset(
    name: str, data_root: Path, cache: Path, max_molecules: int = 0, download: bool = True
) -> tuple[Any, dict[str, Any]]:
    """(PygGraphPropPredDataset, split indices) for OGB set ``name``.

    Looks, in order, for: a ready copy in ``cache``; OGB's unpacked folder in ``data_root``
    (copied to the cache); the MoleculeNet CSV in ``data_root/moleculenet`` (rebuilt into the
    cache); else OGB's download into the cache. ``max_molecules`` > 0 rebuilds from the first
    N CSV rows only (smoke runs), with the scaffold split recomputed on them; without a CSV
    (molpcba) it keeps the first 80/10/10% of N of each part of OGB's split of the full set.
    """
    csv = data_root / "moleculenet" / MOLECULENET_CSV.get(name, "-")
    verify(csv)  # a damaged canonical CSV is refused before anything is built from it
    if max_molecules and not csv.is_file():
        # No CSV to rebuild from (molpcba, or a data root without it): OGB's own split, cut
        # to the first 80/10/10% of N of each part. (The first N graph ids would not do: a
        # scaffold split puts rare scaffolds, hence the whole test part, at high ids.)
        dataset, split = load_ogb_dataset(name, data_root, cache, 0, download)
        n_train = int(0.8 * max_molecules)
        n_eval = max(1, (max_molecules - n_train) // 2)
        sizes = {"train": n_train, "valid": n_eval, "test": n_eval}
        return dataset, {k: v[: sizes.get(k, len(v))] for k, v in split.items()}
    dir_name = name.replace("-", "_") + (f"_first{max_molecules}" if max_molecules else "")
    if csv.is_file():  # keyed by the CSV's size and mtime: a repaired CSV is rebuilt
        dir_name += f"-{source_key([csv])}"
    target = cache / dir_name
    held = [data_root / name.replace("-", "_"), data_root / "ogb" / name.replace("-", "_")]

    def build(staging: Path) -> Path:
        found = next((h for h in held if (h / _RELEASE).exists()), None)
        folder = staging / dir_name
        if found is not None and not max_molecules:
            shutil.copytree(found, folder, ignore=shutil.ignore_patterns("processed"))
        elif csv.is_file():
            print(
                f"{name}: rebuilding OGB's layout from {csv} into {target} (once)", file=sys.stderr
            )
            write_ogb_layout(csv, folder, max_molecules)
        elif download:
            _download(name, staging, held, csv, cache)
            folder = staging / name.replace("-", "_")  # OGB unpacks under its own name
        else:
            raise _missing(name, held, csv, cache)
        _open(name, folder)  # process once, inside the staging folder
        return folder

    # One process builds (a sweep's workers start together), the others wait; the RELEASE
    # marker is OGB's sign of a complete folder (a folder without it is built again).
    build_once(target, build, lambda p: (p / _RELEASE).exists())
    dataset = _open(name, target)
    return dataset, dataset.get_idx_split()


def _missing(name: str, held: list[Path], csv: Path, cache: Path) -> MissingDataError:
    csvs = [csv] if name in MOLECULENET_CSV else []  # molpcba has no held CSV to rebuild from
    looked = ", ".join(str(p) for p in [*held, *csvs, cache / name.replace("-", "_")])
    how = (
        f"run once with internet access (OGB's PygGraphPropPredDataset downloads it into "
        f"{cache}), or unpack OGB's {ogb_meta(name)['url']} so that "
        f"{held[0]}/{_RELEASE} exists"
    )
    return MissingDataError(name, looked, how)


def _download(name: str, root: Path, held: list[Path], csv: Path, cache: Path) -> None:
    """OGB's download into ``root`` (a staging folder); the error names ``cache``."""
    from ogb.graphproppred import PygGraphPropPredDataset

    try:
        with _ogb_guard():
            PygGraphPropPredDataset(name, root=str(root))
    except (OSError, ValueError, EOFError) as exc:  # URLError is an OSError
        raise _missing(name, held, csv, cache) from exc
