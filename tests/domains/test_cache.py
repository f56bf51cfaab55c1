"""Caches built once under concurrency (domains.cache.build_once): 4 processes released at
the same moment on an empty cache all succeed and the entry is built exactly once."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from domains.cache import build_once
from tests.domains.cache_workers import run_together


def test_four_processes_build_one_entry_once(tmp_path: Path) -> None:
    target, counter = tmp_path / "cache" / "entry.txt", tmp_path / "builds.log"
    results = run_together("build_counted", (str(target), str(counter)))
    assert len(counter.read_text().splitlines()) == 1  # one build, three waits
    assert sorted(built for built, _ in results) == [False, False, False, True]
    assert [text for _, text in results] == ["built"] * 4  # nobody read a missing/half file
    leftovers = sorted(p.name for p in target.parent.iterdir())
    assert leftovers == ["entry.txt", "entry.txt.lock"]  # no staging folder left behind


def test_failed_build_leaves_nothing_and_the_next_caller_builds(tmp_path: Path) -> None:
    target = tmp_path / "entry"

    def broken(staging: Path) -> Path:
        (staging / "half").write_text("partial")
        raise RuntimeError("decode failed")

    with pytest.raises(RuntimeError, match="decode failed"):
        build_once(target, broken)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry.lock"]

    def good(staging: Path) -> Path:
        (staging / "dir").mkdir()
        (staging / "dir" / "f").write_text("ok")
        return staging / "dir"

    assert build_once(target, good) is True  # a folder entry; the lock was released
    assert (target / "f").read_text() == "ok"
    assert build_once(target, broken) is False  # ready: build is not called again


def test_an_incomplete_entry_and_a_killed_builders_staging_are_replaced(tmp_path: Path) -> None:
    target = tmp_path / "ds"
    (target / "raw").mkdir(parents=True)  # an old, interrupted build: no marker
    stale = tmp_path / ".ds.tmp-99999-deadbeef"  # what a kill -9 during a build leaves
    stale.mkdir()

    def build(staging: Path) -> Path:
        (staging / "ds").mkdir()
        (staging / "ds" / "DONE").write_text("")
        return staging / "ds"

    assert build_once(target, build, ready=lambda p: (p / "DONE").exists()) is True
    assert sorted(p.name for p in target.iterdir()) == ["DONE"]
    assert not stale.exists()


def _tiny_cifar_tar(path: Path, per_class: dict[str, int]) -> None:
    """cifar10-jpeg/{split}/<class>/NNNN.jpg with ``per_class[split]`` images of each class."""
    from PIL import Image

    from domains.vision.cifar10 import CLASSES

    path.parent.mkdir(parents=True)
    with tarfile.open(path, "w") as tar:
        for split, n in per_class.items():
            for cls in CLASSES:
                for i in range(n):
                    buf = io.BytesIO()
                    Image.new("RGB", (32, 32), (i * 40, 0, 0)).save(buf, format="JPEG")
                    info = tarfile.TarInfo(f"cifar10-jpeg/{split}/{cls}/{i:04d}.jpg")
                    info.size = buf.tell()
                    buf.seek(0)
                    tar.addfile(info, buf)


def test_four_processes_load_cifar10_on_a_cold_cache_decode_once(tmp_path: Path) -> None:
    data, cache, counter = tmp_path / "data", tmp_path / "xdg", tmp_path / "decodes.log"
    _tiny_cifar_tar(data / "cifar10" / "cifar10-jpeg.tar", {"train": 3, "test": 2})
    results = run_together("load_cifar_counted", (str(data), str(cache), str(counter)))
    assert len(counter.read_text().splitlines()) == 1
    # labels 0..9, 3 train / 2 test images each: sums 3*45 and 2*45, 30 train images
    assert results == [[135, 90, 30]] * 4
    assert len(list((cache / "sam-overparam" / "vision" / "cifar10").glob("*.pt"))) == 1


@pytest.mark.graph
@pytest.mark.slow  # ~20 s alone (4 imports of PyG/OGB/rdkit), over a minute on a busy 2-core CI
def test_four_processes_rebuild_the_same_ogb_molecule_set_once(tmp_path: Path, capfd) -> None:
    pytest.importorskip("rdkit")
    from tests.domains.graph.test_graph_ogbg import TOY_SMILES, _write_toy_csv

    _write_toy_csv(tmp_path / "data")
    results = run_together("load_molecules", (str(tmp_path / "data"), str(tmp_path / "cache")))
    n = len(TOY_SMILES)
    assert (
        all(r[0] == n and sum(r[1:]) == n for r in results) and len(set(map(tuple, results))) == 1
    )
    assert capfd.readouterr().err.count("rebuilding OGB's layout") == 1  # children share fd 2
    assert (tmp_path / "cache" / "ogbg_molhiv" / "RELEASE_v1.txt").exists()
