"""Vision domain: parameter counts, data loaders, label noise, augmentation, sparsity masks,
and end-to-end smoke runs (issue 5). CPU only; real data only where $SAM_DATA points at it."""

from __future__ import annotations

import dataclasses
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
import torch

from domains import ConfigError, MissingDataError, create_workload, list_workloads
from samcore import build_optimizer, count_params, make_generator, train_step
from tests.conftest import run_cli

pytestmark = pytest.mark.vision

REPO = Path(__file__).resolve().parents[3]
DATA = Path(os.environ["SAM_DATA"]) if os.environ.get("SAM_DATA") else None
needs_data = pytest.mark.skipif(DATA is None, reason="SAM_DATA not set (offline data folder)")

PAPER_COUNTS = {  # PAPERS.md, Fig. 1 table; ResNet-50 in millions there, exact here
    "mnist-mlp": [61_035, 125_810, 266_610, 1_426_410, 5_366_010],
    "cifar10-resnet18": [44_622, 176_402, 701_466, 2_797_610, 11_173_962, 44_662_922, 178_585_866],
    "imagenet-resnet50": [1_993_976, 6_917_640, 14_771_992, 25_557_032, 39_272_760],
}


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a shared 2-core machine, OpenMP spin-waiting against other
    processes made small steps 100x slower (measured: 3.4 ms vs 370 ms per MLP step)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _count(workload, width: float) -> int:
    with torch.device("meta"):  # 178M parameters without allocating them
        return count_params(workload.build_model(width))


def test_vision_workloads_registered() -> None:
    names = list_workloads(domain="vision")
    assert {"mnist-mlp", "cifar10-resnet18", "cifar10-vit", "imagenet-resnet50"} <= set(names)


@pytest.mark.parametrize("name", sorted(PAPER_COUNTS))
def test_param_counts_match_paper(name: str) -> None:
    w = create_workload(name, "paper")
    assert [_count(w, k) for k in w.widths] == PAPER_COUNTS[name]


def test_mnist_and_resnet_width_grid() -> None:
    assert create_workload("mnist-mlp", "paper").widths == (0.25, 0.5, 1.0, 4.0, 10.0)
    w = create_workload("cifar10-resnet18", "paper")
    assert [w.build_model(1.0).stem[0].out_channels] == [64]  # "1x" = the standard ResNet-18


@pytest.mark.parametrize(
    "name", ["mnist-mlp", "cifar10-resnet18", "cifar10-vit", "imagenet-resnet50"]
)
def test_param_count_strictly_increases(name: str) -> None:
    w = create_workload(name, "paper")
    counts = [_count(w, k) for k in w.widths]
    assert all(a < b for a, b in zip(counts, counts[1:])), counts


# ---------------------------------------------------------------------- data
@needs_data
def test_mnist_idx_real_files() -> None:
    from domains.vision.mnist import load_mnist

    raw = load_mnist(DATA, download=False)
    (xtr, ytr), (xte, yte) = raw["train"], raw["test"]
    assert xtr.shape == (60_000, 28, 28, 1) and xte.shape == (10_000, 28, 28, 1)
    assert xtr.dtype == torch.uint8 and ytr.shape == (60_000,) and yte.shape == (10_000,)
    assert set(ytr.unique().tolist()) == set(range(10)) == set(yte.unique().tolist())
    assert abs(xtr.float().div(255).mean().item() - 0.1307) < 1e-3


def test_mnist_missing_data_is_one_clear_error(tmp_path: Path) -> None:
    w = create_workload("mnist-mlp", "smoke", download=False)
    with pytest.raises(MissingDataError, match="MNIST"):
        w.setup_data(tmp_path, torch.device("cpu"))


@needs_data
def test_mnist_splits() -> None:
    w = create_workload("mnist-mlp", "paper")
    w.setup_data(DATA, torch.device("cpu"))
    sizes = {k: len(v) for k, v in w.splits.labels.items()}
    assert sizes == {"train": 55_000, "val": 5_000, "test": 10_000}
    assert w.steps_per_epoch() == 430


def _tiny_cifar_tar(path: Path, per_class: int = 2) -> None:
    from PIL import Image

    from domains.vision.cifar10 import CLASSES

    with tarfile.open(path, "w") as tar:
        for split in ("train", "test"):
            for c, cls in enumerate(CLASSES):
                for i in range(per_class):
                    buf = io.BytesIO()
                    Image.new("RGB", (32, 32), (c * 20, i * 50, 7)).save(buf, "JPEG", quality=95)
                    info = tarfile.TarInfo(f"cifar10-jpeg/{split}/{cls}/{i:04d}.jpg")
                    info.size = buf.tell()
                    buf.seek(0)
                    tar.addfile(info, buf)


def test_cifar_jpeg_tar_decoder(tmp_path: Path) -> None:
    from domains.vision.cifar10 import decode_jpeg_tar

    _tiny_cifar_tar(tmp_path / "t.tar", per_class=2)
    raw = decode_jpeg_tar(tmp_path / "t.tar")
    x, y = raw["train"]
    assert x.shape == (20, 32, 32, 3) and x.dtype == torch.uint8
    assert y.tolist() == [c for c in range(10) for _ in range(2)]
    assert abs(int(x[4, 0, 0, 0]) - 40) <= 3  # class 2 -> red 40 (JPEG is lossy)


@pytest.mark.slow
@needs_data
def test_cifar_jpeg_tar_full_decode() -> None:
    """Decodes the held tar once into the cache (~30 s on 2 cores), then loads it."""
    from domains.vision.cifar10 import load_cifar10

    raw = load_cifar10(DATA, download=False)
    assert raw["train"][0].shape == (50_000, 32, 32, 3)
    assert raw["test"][0].shape == (10_000, 32, 32, 3)
    assert torch.bincount(raw["train"][1]).tolist() == [5_000] * 10
    assert torch.bincount(raw["test"][1]).tolist() == [1_000] * 10
    w = create_workload("cifar10-resnet18", "paper", download=False)
    w.setup_data(DATA, torch.device("cpu"))
    assert {k: len(v) for k, v in w.splits.labels.items()} == {
        "train": 45_000,
        "val": 5_000,
        "test": 10_000,
    }


# ---------------------------------------------------------------------- label noise
@pytest.mark.parametrize("noisy_val", [True, False])
def test_label_noise_exact_and_train_only(noisy_val: bool) -> None:
    kw = dict(synthetic_data=True, num_train=2_000, num_val=1_000, num_test=1_000)
    clean = create_workload("mnist-mlp", "smoke", **kw)
    noisy = create_workload("mnist-mlp", "smoke", label_noise=0.75, noisy_val=noisy_val, **kw)
    for w in (clean, noisy):
        w.setup_data(Path("."), torch.device("cpu"))
    ca, na = clean.splits.labels, noisy.splits.labels
    assert (ca["train"] != na["train"]).sum().item() == 1_500  # exactly 75%
    assert torch.equal(clean.splits.images["train"], noisy.splits.images["train"])
    assert torch.equal(ca["test"], na["test"])  # test labels never flipped
    assert (ca["val"] != na["val"]).sum().item() == (750 if noisy_val else 0)
    again = create_workload("mnist-mlp", "smoke", label_noise=0.75, noisy_val=noisy_val, **kw)
    again.setup_data(Path("."), torch.device("cpu"))
    assert torch.equal(again.splits.labels["train"], na["train"])  # fixed by data_seed


@pytest.mark.parametrize("rate", [1.0, -0.1, 1.5])
def test_label_noise_out_of_range_is_an_error(rate: float) -> None:
    with pytest.raises(ConfigError, match="label_noise"):
        create_workload("cifar10-resnet18", "smoke", label_noise=rate)


# ---------------------------------------------------------------------- augmentation
def test_random_crop_flip_matches_per_image_reference() -> None:
    from domains.vision.common import random_crop_flip

    x = torch.randint(0, 256, (16, 32, 32, 3), dtype=torch.uint8)
    out = random_crop_flip(x, 4, make_generator(0, "t"))
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert torch.equal(out, random_crop_flip(x, 4, make_generator(0, "t")))  # deterministic
    assert not torch.equal(out, random_crop_flip(x, 4, make_generator(1, "t")))
    g = make_generator(0, "t")  # same draws, applied image by image
    dy, dx = torch.randint(0, 9, (16,), generator=g), torch.randint(0, 9, (16,), generator=g)
    flip = torch.rand(16, generator=g) < 0.5
    xp = torch.nn.functional.pad(x, (0, 0, 4, 4, 4, 4))
    for i in range(16):
        ref = xp[i, dy[i] : dy[i] + 32, dx[i] : dx[i] + 32]
        assert torch.equal(out[i], ref.flip(1) if flip[i] else ref)


def test_train_batches_shapes_and_determinism() -> None:
    w = create_workload("cifar10-resnet18", "smoke", synthetic_data=True)
    w.setup_data(Path("."), torch.device("cpu"))
    a = list(w.train_batches(0, make_generator(3, "data-order/0")))
    b = list(w.train_batches(0, make_generator(3, "data-order/0")))
    assert len(a) == w.steps_per_epoch() == 4
    assert a[0][0].shape == (128, 3, 32, 32) and a[0][0].dtype == torch.float32
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b))


# ---------------------------------------------------------------------- sparsity
@pytest.mark.parametrize("method", ["random", "snip"])
def test_sparsity_masks_survive_sam_steps(method: str) -> None:
    w = create_workload(
        "cifar10-resnet18",
        "smoke",
        synthetic_data=True,
        sparsity=0.9,
        sparsity_method=method,
        weight_decay=5e-4,
        num_train=64,
        batch_size=32,
    )
    w.setup_data(Path("."), torch.device("cpu"))
    model = w.build_model(1 / 16)
    zeros = {p: (p == 0) for p in w.masks}
    kept = sum(int(m.sum()) for m in w.masks.values())
    total = sum(m.numel() for m in w.masks.values())
    assert abs(1 - kept / total - 0.9) < 1e-3
    opt = build_optimizer(model, "sgd", lr=0.1, momentum=0.9, weight_decay=5e-4, sam=True, rho=0.5)
    for batch in list(w.train_batches(0, make_generator(0, "d")))[:2]:
        train_step(model, opt, w.loss, batch)
    for p, z in zeros.items():
        assert torch.all(p[z] == 0)  # pruned weights exactly zero after SAM steps
        assert not torch.all(p[~z] == 0)


# ---------------------------------------------------------------------- end to end
@pytest.mark.parametrize("name", sorted(PAPER_COUNTS) + ["cifar10-vit"])
def test_tiny_preset_two_sam_steps(name: str) -> None:
    """Registry-style smoke: tiny preset on synthetic data, two SAM steps, eval has the target."""
    w = create_workload(name, "tiny")
    w.setup_data(Path("."), torch.device("cpu"))
    model = w.build_model(w.widths[0])
    opt = build_optimizer(model, "sgd", lr=0.05, momentum=0.9, sam=True, rho=0.05)
    for batch in list(w.train_batches(0, make_generator(0, "d")))[:2]:
        res = train_step(model, opt, w.loss, batch)
        assert torch.isfinite(res.loss)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert "val/acc" in w.evaluate(model.eval()) and "test/acc" in w.evaluate(model)


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return run_cli(args, REPO, timeout=120)


def test_cli_mnist_smoke(tmp_path: Path) -> None:
    data = ["--data-root", str(DATA)] if DATA else ["--synthetic_data=true"]
    out = _run(
        [
            "--workload",
            "mnist-mlp",
            "--preset",
            "smoke",
            "--results",
            str(tmp_path),
            "--width",
            "0.25x",
            "--no-progress",
            *data,
        ]
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "done     mnist-mlp sgd w0.25x" in out.stdout and "sam rho=0.1 w0.25x" in out.stdout
    import sqlite3

    con = sqlite3.connect(tmp_path / "runs.sqlite")
    assert con.execute("select count(*) from runs where status='done'").fetchone()[0] == 2
    assert con.execute("select count(*) from metrics where key='test/acc'").fetchone()[0] >= 2


def test_cli_label_noise_recorded_in_config(tmp_path: Path) -> None:
    from runners.run import main

    rc = main(
        [
            "--workload",
            "cifar10-resnet18",
            "--preset",
            "smoke",
            "--width",
            "0.0625x",
            "--optimizer",
            "sam",
            "--results",
            str(tmp_path),
            "--no-progress",
            "--synthetic_data=true",
            "--num_train=128",
            "--label-noise",
            "0.5",
        ]
    )
    assert rc == 0
    import json
    import sqlite3

    con = sqlite3.connect(tmp_path / "runs.sqlite")
    cfg = json.loads(con.execute("select config from runs").fetchone()[0])
    assert cfg["run"]["workload_config"]["label_noise"] == 0.5


def _tiny_imagefolder(root: Path, classes: int = 2, per_class: int = 6) -> None:
    from PIL import Image

    for split, n in (("train", per_class), ("val", 2)):
        for c in range(classes):
            d = root / "imagenet" / split / f"n{c:08d}"
            d.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (40, 48), (100 * c, 10 * i, 50)).save(d / f"{i}.JPEG")


def test_imagenet_tiny_imagefolder_smoke(tmp_path: Path) -> None:
    from runners.run import main

    _tiny_imagefolder(tmp_path / "data")
    rc = main(
        [
            "--workload",
            "imagenet-resnet50",
            "--preset",
            "smoke",
            "--width",
            "0.25x",
            "--results",
            str(tmp_path / "res"),
            "--data-root",
            str(tmp_path / "data"),
            "--no-progress",
        ]
    )
    assert rc == 0


def test_imagenet_offline_missing_data(tmp_path: Path) -> None:
    w = create_workload("imagenet-resnet50", "smoke")
    with pytest.raises(MissingDataError, match="ImageNet"):
        w.setup_data(tmp_path, torch.device("cpu"))


def test_matched_parameter_sparsity() -> None:
    """The paper's matched mode: ResNet-18 at 32 filters pruned to the 16-filter count (~0.75)."""
    w = create_workload("cifar10-resnet18", "smoke", match_params_of=0.25)
    model = w.build_model(0.5)
    m = w.sparsity_metrics(model)
    assert abs(m["model/nonzero_params"] - 701_466) < 50
    assert 0.74 < m["model/sparsity"] < 0.76
    with pytest.raises(ConfigError, match="not both"):
        create_workload("cifar10-resnet18", "smoke", match_params_of=0.25, sparsity=0.5)


def test_same_seed_same_metric_rows(tmp_path: Path) -> None:
    import sqlite3

    from runners.run import main

    rows = []
    for d in ("a", "b"):
        args = [
            "--workload",
            "mnist-mlp",
            "--preset",
            "smoke",
            "--width",
            "0.25x",
            "--optimizer",
            "sam",
            "--results",
            str(tmp_path / d),
            "--no-progress",
            "--synthetic_data=true",
        ]
        assert main(args) == 0
        con = sqlite3.connect(tmp_path / d / "runs.sqlite")
        rows.append(
            con.execute(
                "select step, key, value from metrics where key not like 'time/%' "
                "order by step, key"
            ).fetchall()
        )
    assert rows[0] == rows[1] and len(rows[0]) > 5


def test_subsets_are_seeded_and_class_balanced_on_sorted_data(monkeypatch) -> None:
    """Decoded JPEG folders are sorted by class: subsets must not be "the first N"."""
    w = create_workload("cifar10-resnet18", "quick")
    y = torch.arange(10).repeat_interleave(100)  # class-sorted, 100 per class
    x = torch.zeros(1000, 32, 32, 3, dtype=torch.uint8)
    monkeypatch.setattr(w, "_load_raw", lambda root: {"train": (x, y), "test": (x, y)})
    w.config = w.config.__class__(num_train=300, num_val=200, num_test=200)
    w.setup_data(Path("."), torch.device("cpu"))
    for split in ("train", "val", "test"):
        assert torch.bincount(w.splits.labels[split], minlength=10).min() > 0, split


def test_read_idx_generated(tmp_path: Path) -> None:
    """The IDX parser without the data set: header, shape and bytes of a generated file."""
    import gzip
    import struct

    from domains.vision.mnist import read_idx

    body = bytes(range(24))
    with gzip.open(tmp_path / "x-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">HBB3I", 0, 8, 3, 2, 3, 4) + body)
    x = read_idx(tmp_path / "x-idx3-ubyte.gz")
    assert x.shape == (2, 3, 4) and x.flatten().tolist() == list(range(24))
    (tmp_path / "bad").write_bytes(struct.pack(">HBB1I", 0, 0x0D, 1, 4) + bytes(16))
    with pytest.raises(ValueError, match="IDX"):
        read_idx(tmp_path / "bad")


# ---------------------------------------------------------------------- precision
@pytest.mark.parametrize("name", sorted(PAPER_COUNTS) + ["cifar10-vit"])
def test_paper_preset_computes_in_fp32_unless_the_run_asks(name: str, monkeypatch) -> None:
    """The workload itself never autocasts (no torch.autocast call in loss or evaluate; the
    forward sees no autocast on any device type); autocast comes only from the run's
    precision, i.e. train_step's autocast_dtype."""
    small = dict(num_train=8, num_val=8, num_test=8, batch_size=4, eval_batch_size=4)
    w = create_workload(name, "paper", synthetic_data=True, train_eval_size=4, **small)
    assert "bf16" not in {f.name for f in dataclasses.fields(w.config)}
    w.setup_data(Path("."), torch.device("cpu"))
    model = w.build_model(w.widths[0])
    seen: list[tuple[bool, bool]] = []
    model.register_forward_hook(
        lambda *_: seen.append(
            (torch.is_autocast_enabled("cpu"), torch.is_autocast_enabled("cuda"))
        )
    )
    calls: list[tuple] = []
    real = torch.autocast
    monkeypatch.setattr(torch, "autocast", lambda *a, **k: calls.append(a) or real(*a, **k))
    batch = next(w.train_batches(0, make_generator(0, "d")))
    w.loss(model, batch)
    w.evaluate(model.eval())
    assert calls == [] and seen and not any(a or b for a, b in seen)
    monkeypatch.setattr(torch, "autocast", real)
    seen.clear()
    opt = build_optimizer(model.train(), "sgd", lr=0.01)
    train_step(model, opt, w.loss, batch, autocast_dtype=torch.bfloat16)  # --precision bf16
    assert seen == [(True, False)]
