"""runners/theory.py smoothness-pl (issue 22, Fig. 21): runs store the smoothness and PL rows at
every evaluation, and the figure and table are drawn from the store."""

from __future__ import annotations

import pytest

from results.store import Store
from runners.theory import main as theory_main


def test_smoothness_pl_smoke_end_to_end(tmp_path):
    rc = theory_main(
        ["smoothness-pl", "--preset", "smoke", "--results", str(tmp_path), "--no-progress"]
    )
    assert rc == 0
    store = Store(tmp_path / "runs.sqlite")
    runs = store.runs()
    assert sorted(r["optimizer"] for r in runs) == ["sam", "sgd"]
    for run in runs:
        assert run["config"]["run"]["workload_config"]["smoothness_radius"] == 0.1
        rows = {
            k: {m["step"]: m["value"] for m in store.metrics(run["id"], k)}
            for k in ("train/smoothness", "train/pl_ratio", "train/grad_norm", "train/loss")
        }
        assert len(rows["train/smoothness"]) == 2  # smoke: 2 epochs, evaluated each epoch
        for step, pl in rows["train/pl_ratio"].items():
            # PL ratio = ||g||^2 / (2 L), L the train loss of the same evaluation (L* = 0)
            expected = rows["train/grad_norm"][step] ** 2 / (2 * rows["train/loss"][step])
            assert pl == pytest.approx(expected, rel=1e-4)
            assert rows["train/smoothness"][step] > 0
    store.close()
    assert (tmp_path / "figures" / "smoothness_pl_cifar10-resnet18.png").stat().st_size > 0
    table = (tmp_path / "tables" / "smoothness_pl_cifar10-resnet18.md").read_text()
    assert "| 0.0625x | SGD | 2 |" in table
    # runners/report.py redraws it from the store alone
    from runners.report import main as report_main

    figure = tmp_path / "figures" / "smoothness_pl_cifar10-resnet18.png"
    figure.unlink()
    assert report_main(["--results", str(tmp_path), "--sections", "smoothness"]) == 0
    assert figure.exists()


def test_smoothness_pl_bad_input_is_one_line(capsys):
    assert theory_main(["smoothness-pl", "--seeds", "x"]) == 2
    assert "--seeds" in capsys.readouterr().err
