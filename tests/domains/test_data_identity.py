"""Each run's data identity (issue 20, finding 2): the files a workload read, with their sizes
and SHA-256 (compared here with the canonical table, computed independently of the loader), or
a generator's parameters; never part of the run id."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from domains import create_workload
from domains.data_check import CANONICAL

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
needs_data = pytest.mark.skipif(not (DATA / "glue").is_dir(), reason="no shared data")


def _expected(*rels: str) -> dict[str, dict[str, int | str]]:
    return {
        str(DATA / rel): {"size": CANONICAL[rel][0], "sha256": CANONICAL[rel][1]} for rel in rels
    }


@needs_data
@pytest.mark.parametrize(
    "name, rels",
    [
        ("sst2-lstm", [f"glue/SST-2/{f}" for f in ("train.tsv", "dev.tsv", "test-labeled.tsv")]),
        ("mnist-mlp", [r for r in CANONICAL if r.startswith("MNIST/")]),
    ],
)
def test_offline_data_names_its_files_with_canonical_sizes_and_digests(name, rels):
    workload = create_workload(name, "smoke")
    assert workload.data_identity() == {}  # nothing read yet
    workload.setup_data(DATA, torch.device("cpu"))
    assert workload.data_identity() == {"files": _expected(*rels)}


def test_a_variant_file_is_told_apart_by_its_digest(tmp_path, monkeypatch):
    monkeypatch.setenv("SAM_DATA_UNCHECKED", "1")
    folder = tmp_path / "glue" / "SST-2"
    folder.mkdir(parents=True)
    rows = "sentence\tlabel\n" + "".join(f"w{i} good\t{i % 2}\n" for i in range(12))
    for name in ("train.tsv", "dev.tsv", "test-labeled.tsv"):
        (folder / name).write_text(rows)
    workload = create_workload("sst2-lstm", "smoke", vocab_size=3)  # 2 specials + "good"
    workload.setup_data(tmp_path, torch.device("cpu"))
    files = workload.data_identity()["files"]
    digest = hashlib.sha256(rows.encode()).hexdigest()
    assert files == {
        str(folder / n): {"size": len(rows), "sha256": digest}
        for n in sorted(("train.tsv", "dev.tsv", "test-labeled.tsv"))
    }


def test_generated_data_names_the_generator_and_its_parameters():
    workload = create_workload("synthetic-regression", "smoke", data_seed=7, noise_std=0.5)
    identity = workload.data_identity()
    assert identity["generated"] == "domains.synthetic.regression.TeacherStudentRegression"
    assert identity["params"]["data_seed"] == 7 and identity["params"]["noise_std"] == 0.5
    assert identity["params"]["num_train"] == workload.config.num_train
