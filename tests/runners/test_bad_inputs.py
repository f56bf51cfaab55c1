"""Bad input to runners/run.py: one stderr line saying what is wrong and what is expected,
exit code 2, and the results store byte-for-byte unchanged (or never created).

Extends tests/runners/test_cli.py (which has the first 14 cases) with the rest of the matrix:
widths, rho, seeds, typed overrides, vision ablation ranges, data sets that are missing or
damaged, and results folders that cannot hold the store.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import shutil
import struct

import pytest

from runners.run import main
from tests.conftest import run_cli

SYN = ["--domain", "synthetic", "--preset", "smoke", "--no-progress"]
MNIST = ["--workload", "mnist-mlp", "--preset", "smoke", "--no-progress"]

# (argv, words the one error line must contain)
CASES = [
    # what to run
    (["--domain", "chemistry"], ["unknown domain 'chemistry'", "expected one of"]),
    (["--domain", ""], ["unknown domain ''"]),
    (["--workload", "mnist-mpl"], ["unknown workload 'mnist-mpl'", "mnist-mlp"]),
    (["--optimizer", "lion"], ["invalid choice: 'lion'", "sam"]),
    (["--preset", "fast"], ["unknown preset 'fast'", "smoke"]),
    (["--precision", "fp8"], ["invalid choice: 'fp8'", "bf16"]),
    # widths
    (["--width", "4y"], ["width must be a positive multiplier", "'4y'"]),
    (["--width", "0x"], ["width must be a positive multiplier", "'0x'"]),
    (["--width=-1x"], ["width must be a positive multiplier", "'-1x'"]),
    (["--width", ""], ["width list must look like", "''"]),
    (["--width", "x"], ["width must be a positive multiplier", "'x'"]),
    (["--width", "1x,,2x"], ["width list must look like"]),
    (["--width", "nan"], ["width must be a positive multiplier"]),
    (["--width", "1e400x"], ["width must be a positive multiplier"]),
    (["--width", "0.001x"], ["--width 0.001x", "use a larger width"]),
    # rho
    (["--rho=-0.1"], ["--rho must be >= 0"]),
    (["--rho", "nan"], ["--rho must be >= 0"]),
    (["--rho", "inf"], ["--rho must be >= 0"]),
    (["--rho=-inf"], ["--rho must be >= 0"]),
    (["--rho", "abc"], ["--rho must be a number", "'abc'"]),
    (["--rho", "0.1,"], ["--rho must be a number"]),
    # seeds
    (["--seeds=-1"], ["--seeds must be distinct non-negative integers", "'-1'"]),
    (["--seeds", "a"], ["--seeds must be a comma list of integers", "'a'"]),
    (["--seeds", "0,0"], ["--seeds must be distinct", "'0,0'"]),
    (["--seeds", "1.5"], ["--seeds must be a comma list of integers"]),
    (["--seeds", ""], ["--seeds must be a comma list of integers"]),
    # other run flags
    (["--m-sharpness", "-1"], ["must be >= 0"]),
    (["--micro-batch-size", "two"], ["invalid int value: 'two'"]),
    (["--device", "tpu"], ["--device must be cpu, cuda or cuda:N", "'tpu'"]),
    # workload overrides, typed by the config dataclass
    (["--num_epochs=1.5"], ["num_epochs expects an integer", "'1.5'"]),
    (["--learning_rate=fast"], ["learning_rate expects a number", "'fast'"]),
    (["--betas=0.9"], ["betas expects 2 values"]),
    (["--decay_norm_and_bias=maybe"], ["decay_norm_and_bias expects true/false"]),
    (["--lr_milestones=a,b"], ["lr_milestones expects a number"]),
    (["--num_epochs"], ["override --num_epochs needs a value"]),
    (["stray"], ["unexpected argument 'stray'", "--key=value"]),
    (["--=3"], ["unknown config key ''"]),
    (["--num\nepochs"], ["override --num\\nepochs needs a value"]),  # still one line
    (["--loss=l1"], ["loss must be half_mse or mse", "'l1'"]),
    # right type, out of range: refused by the config, not found inside the training loop
    (["--batch_size=0"], ["batch_size must be >= 1, got 0"]),
    (["--num_epochs=0"], ["num_epochs must be >= 1, got 0"]),
    (["--eval_every=0"], ["eval_every must be >= 1, got 0"]),
    (["--learning_rate=nan"], ["learning_rate must be a finite number >= 0, got nan"]),
    (["--learning_rate=-1"], ["learning_rate must be a finite number >= 0, got -1.0"]),
    (["--weight_decay=inf"], ["weight_decay must be a finite number >= 0"]),
    (["--warmup_steps=-5"], ["warmup_steps must be >= 0"]),
    (["--lr_gamma=0"], ["lr_gamma must be a finite number > 0"]),
    (["--betas=0.9,1.5"], ["betas must be in [0, 1)"]),
    (["--lr_milestones=0.5,2"], ["lr_milestones are fractions of training in [0, 1]"]),
    (["--lr_schedule=foo"], ["lr_schedule must be one of", "'foo'"]),
]

VISION_CASES = [
    # label noise and sparsity are fractions in [0, 1), checked when the config is built
    (["--label_noise=1"], ["label_noise must be in [0, 1)", "1.0"]),
    (["--label_noise=-0.1"], ["label_noise must be in [0, 1)"]),
    (["--label_noise=nan"], ["label_noise must be in [0, 1)"]),
    (["--label_noise=1.5"], ["label_noise must be in [0, 1)"]),
    (["--sparsity=1"], ["sparsity must be in [0, 1)"]),
    (["--sparsity=-0.5"], ["sparsity must be in [0, 1)"]),
    (["--sparsity=inf"], ["sparsity must be in [0, 1)"]),
    (["--hidden=300"], ["hidden expects 2 values"]),
]


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A results folder holding one finished run: what a bad command must not touch."""
    folder = tmp_path_factory.mktemp("stored")
    assert main(SYN + ["--optimizer", "base", "--results", str(folder)]) == 0
    return folder / "runs.sqlite"


def _check_one_line(capsys, code, needles):
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("run.py: error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]


def _check_with_store(stored, tmp_path, capsys, argv, needles):
    db = tmp_path / "out" / "runs.sqlite"
    db.parent.mkdir()
    shutil.copy(stored, db)
    before = _digest(db)
    _check_one_line(capsys, main(argv + ["--results", str(db.parent)]), needles)
    assert _digest(db) == before
    assert sorted(p.name for p in db.parent.iterdir()) == ["runs.sqlite"]  # no -wal, no ckpt


@pytest.mark.parametrize("args,needles", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_run_input(stored, tmp_path, capsys, args, needles):
    _check_with_store(stored, tmp_path, capsys, SYN + args, needles)


@pytest.mark.parametrize("args,needles", VISION_CASES, ids=[a[0] for a, _ in VISION_CASES])
@pytest.mark.parametrize("workload", ["mnist-mlp", "cifar10-resnet18"])
def test_bad_vision_ablation_value(stored, tmp_path, capsys, workload, args, needles):
    if args[0].startswith("--hidden") and workload != "mnist-mlp":
        pytest.skip("hidden is an MLP field")
    argv = ["--workload", workload, "--preset", "smoke", *args]
    _check_with_store(stored, tmp_path, capsys, argv, needles)


# ---------------------------------------------------------------------- data sets
def _idx(shape):
    """An uncompressed uint8 IDX file of ``shape``, all zeros."""
    header = struct.pack(f">HBB{len(shape)}I", 0, 8, len(shape), *shape)
    return header + bytes(math.prod(shape))


def _write_mnist(root, n_train=600, n_test=100):
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    files = {
        "train-images-idx3-ubyte.gz": _idx((n_train, 28, 28)),
        "train-labels-idx1-ubyte.gz": _idx((n_train,)),
        "t10k-images-idx3-ubyte.gz": _idx((n_test, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": _idx((n_test,)),
    }
    for name, data in files.items():
        (raw / name).write_bytes(gzip.compress(data))
    return raw


def _gz(data):
    return gzip.compress(data)


DATA_CASES = {
    # file name, new bytes, words of the error
    "truncated-gzip": (
        "train-images-idx3-ubyte.gz",
        lambda old: old[: len(old) // 2],
        ["train-images-idx3-ubyte.gz", "unreadable", "expected an IDX file"],
    ),
    "not-gzip": (
        "train-images-idx3-ubyte.gz",
        lambda old: b"<html>404 Not Found</html>",
        ["train-images-idx3-ubyte.gz", "unreadable"],
    ),
    "header-only": (
        "train-labels-idx1-ubyte.gz",
        lambda old: _gz(b"\x00\x00"),
        ["train-labels-idx1-ubyte.gz", "too short for an IDX header"],
    ),
    "wrong-magic": (
        "t10k-images-idx3-ubyte.gz",
        lambda old: _gz(struct.pack(">HBB3I", 0, 0x0D, 3, 1, 28, 28) + bytes(4 * 784)),
        ["t10k-images-idx3-ubyte.gz", "not a uint8 IDX file"],
    ),
    "short-body": (
        "train-images-idx3-ubyte.gz",
        lambda old: _gz(_idx((600, 28, 28))[:-100]),
        ["train-images-idx3-ubyte.gz", "expected 470400"],
    ),
    "wrong-image-shape": (
        "train-images-idx3-ubyte.gz",
        lambda old: _gz(_idx((600, 32, 32))),
        ["train-images-idx3-ubyte.gz", "(600, 32, 32)", "expected (N, 28, 28)"],
    ),
    "label-count": (
        "t10k-labels-idx1-ubyte.gz",
        lambda old: _gz(_idx((99,))),
        ["t10k-labels-idx1-ubyte.gz", "expected (100,)"],
    ),
}


@pytest.mark.vision
@pytest.mark.parametrize("case", sorted(DATA_CASES))
def test_damaged_mnist_file_is_named(tmp_path, monkeypatch, capsys, case):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # no cached copy to find
    raw = _write_mnist(tmp_path / "data")
    name, damage, needles = DATA_CASES[case]
    (raw / name).write_bytes(damage((raw / name).read_bytes()))
    argv = MNIST + ["--data-root", str(tmp_path / "data"), "--results", str(tmp_path / "out")]
    _check_one_line(capsys, main(argv + ["--num_val=100", "--download=false"]), needles)
    assert not (tmp_path / "out").exists()  # the store is opened only after the data loaded


@pytest.mark.vision
def test_generated_mnist_files_load(tmp_path, monkeypatch, capsys):
    """The generator above writes files the loader accepts, so the cases above fail only by
    their damage (a bad-input test that could never pass would prove nothing)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    _write_mnist(tmp_path / "data")
    argv = MNIST + ["--data-root", str(tmp_path / "data"), "--results", str(tmp_path / "out")]
    assert main(argv + ["--num_val=100", "--num_train=0", "--num_test=0", "--optimizer=base"]) == 0


@pytest.mark.vision
def test_missing_mnist_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "empty").mkdir()
    argv = MNIST + ["--data-root", str(tmp_path / "empty"), "--results", str(tmp_path / "out")]
    code = main(argv + ["--download=false"])
    _check_one_line(capsys, code, ["MNIST not found in", "train-images-idx3-ubyte.gz"])
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------- results folders
def test_results_path_is_a_file(tmp_path, capsys):
    (tmp_path / "results").write_text("a file")
    code = main(SYN + ["--results", str(tmp_path / "results")])
    _check_one_line(capsys, code, ["is a file, expected a folder"])
    assert (tmp_path / "results").read_text() == "a file"


def test_store_is_a_folder(tmp_path, capsys):
    (tmp_path / "out" / "runs.sqlite").mkdir(parents=True)
    code = main(SYN + ["--results", str(tmp_path / "out")])
    _check_one_line(capsys, code, ["runs.sqlite exists and is not a file"])


def test_store_is_not_a_database(tmp_path, capsys):
    db = tmp_path / "out" / "runs.sqlite"
    db.parent.mkdir()
    db.write_bytes(b"these are not the runs you are looking for" * 100)
    before = _digest(db)
    code = main(SYN + ["--results", str(db.parent)])
    _check_one_line(capsys, code, ["cannot open results store", "not a database"])
    assert _digest(db) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders anyway")
def test_unwritable_results_folder(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        code = main(SYN + ["--results", str(ro / "out")])
        _check_one_line(capsys, code, ["is not writable"])
    finally:
        ro.chmod(0o700)


# ---------------------------------------------------------------------- as a user runs it
def test_damaged_data_and_bad_results_through_the_script(tmp_path):
    """Two cases end to end in a subprocess: no traceback, exit 2, one line."""
    raw = _write_mnist(tmp_path / "data")
    (raw / "train-images-idx3-ubyte.gz").write_bytes(b"garbage")
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    res = run_cli(
        MNIST + ["--data-root", "data", "--num_val=100", "--download=false", "--results", "o"],
        tmp_path,
        env=env,
    )
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "train-images-idx3-ubyte.gz: unreadable" in res.stderr
    assert not (tmp_path / "o").exists()
