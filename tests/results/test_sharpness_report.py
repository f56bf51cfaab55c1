"""The measures table, and the sharpness tables and figures built from the store alone."""

from __future__ import annotations

import subprocess
import sys

import pytest

from results.sharpness_report import generalization_gap, sharpness_figures, sharpness_tables
from results.store import Store
from tests.conftest import REPO
from tests.results.known_store import start_toy_run


def _add_run(store, run_id, *, optimizer, width, seed, train, test, val=None, mode="min"):
    start_toy_run(
        store,
        run_id,
        optimizer=optimizer,
        width=width,
        seed=seed,
        rho=0.1 if optimizer == "sam" else 0.0,
        n_params=int(100 * width),
    )
    if train is not None:
        store.log_metrics(run_id, 10, 1.0, {"train/mse": 9.0, "test/mse": 9.0})  # superseded
        store.log_metrics(run_id, 20, 2.0, {"train/mse": train, "test/mse": test})
    summary = {"target": "mse", "target_mode": mode, "best/val_mse": val, "best/test_mse": test}
    store.finish_run(run_id, "done", summary=summary)


def test_measures_round_trip_and_replace(tmp_path):
    store = Store(tmp_path / "r.sqlite")
    _add_run(store, "a", optimizer="sgd", width=1, seed=0, train=1.0, test=1.2)
    store.log_measure("a", "lambda_max", 13.5, {"n_examples": 1024})
    store.log_measure("a", "trace", 60.0)
    store.log_measure("a", "lambda_max", 14.0, {"n_examples": 2048})  # measured again: replaced
    rows = store.measures(run_id="a")
    assert [(r["name"], r["value"]) for r in rows] == [("lambda_max", 14.0), ("trace", 60.0)]
    assert rows[0]["details"] == {"n_examples": 2048} and rows[0]["measured_at"]
    assert store.measures(name="trace")[0]["run_id"] == "a"
    assert store.measures(run_id="b") == []
    store.close()
    assert Store(tmp_path / "r.sqlite").measures(name="lambda_max")[0]["value"] == 14.0


def test_gap_from_final_train_and_test_else_best_val(tmp_path):
    store = Store(tmp_path / "r.sqlite")
    _add_run(store, "a", optimizer="sgd", width=1, seed=0, train=1.0, test=1.25)
    _add_run(
        store, "b", optimizer="sgd", width=1, seed=1, train=None, test=0.80, val=0.85, mode="max"
    )
    assert generalization_gap(store, store.get_run("a")) == pytest.approx(0.25)  # last step wins
    assert generalization_gap(store, store.get_run("b")) == pytest.approx(0.05)  # acc: val - test


def test_tables_with_kendall_tau_and_figures(tmp_path):
    store = Store(tmp_path / "r.sqlite")
    gaps = {"b1": 0.10, "b2": 0.20, "s1": 0.05, "s2": 0.07}
    for run_id, gap in gaps.items():
        opt, width = ("sgd" if run_id[0] == "b" else "sam"), float(run_id[1])
        _add_run(store, run_id, optimizer=opt, width=width, seed=0, train=1.0, test=1.0 + gap)
        store.log_measure(run_id, "lambda_max", 10 * gap)  # concordant with the gap: tau = 1
        store.log_measure(run_id, "worst_l2", -gap)  # discordant: tau = -1
        for k in (1, 2, 3, 4):
            store.log_measure(run_id, f"moment_{k}", gap**k)
    table = sharpness_tables(store)
    assert "| 1x | sgd | 1 | 1 | -0.1 | 0.1 |" in table
    assert "| 2x | sam rho=0.1 | 1 | 0.7 | -0.07 | 0.07 |" in table
    assert table.index("| 1x | sgd") < table.index("| 1x | sam")
    assert "| lambda_max | 1 |" in table and "| worst_l2 | -1 |" in table
    paths = sharpness_figures(store, tmp_path / "figs")
    assert sorted(p.name for p in paths) == [
        "hessian_moments_vs_width_toy.png",
        "lambda_max_vs_width_toy.png",
    ]
    assert all(p.stat().st_size > 1000 and p.read_bytes()[:4] == b"\x89PNG" for p in paths)
    assert not list((tmp_path / "figs").glob("*.tmp"))


def test_empty_store_says_so(tmp_path):
    store = Store(tmp_path / "r.sqlite")
    assert "no sharpness measures" in sharpness_tables(store)
    assert sharpness_figures(store, tmp_path / "figs") == []


def test_report_module_does_not_import_torch():
    code = (
        "import sys, results.sharpness_report as r, results.store;"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_two_presets_are_not_pooled(tmp_path):
    # issue 17: Kendall's tau and the per-width means pooled runs across presets
    store = Store(tmp_path / "r.sqlite")
    gaps = {"quick": (0.1, 0.2, 0.3), "paper": (0.3, 0.2, 0.1)}
    for preset, values in gaps.items():
        for width, gap in zip((1, 2, 4), values, strict=True):
            run_id = f"{preset}{width}"
            start_toy_run(store, run_id, width=width, preset=preset, n_params=100 * width)
            store.log_metrics(run_id, 10, 1.0, {"train/mse": 1.0, "test/mse": 1.0 + gap})
            summary = {"target": "mse", "target_mode": "min"}
            store.finish_run(run_id, "done", summary=summary)
            # concordant within each preset; pooled, the paper runs' offset makes pairs discordant
            store.log_measure(run_id, "lambda_max", gap - (preset == "paper"))
    table = sharpness_tables(store)
    # per preset tau is exactly 1 (pooled, the six runs give tau-b = 0.45)
    assert table.count("| lambda_max | 1 | ") == 2
    assert "### toy [preset=paper]" in table and "### toy [preset=quick]" in table
    assert table.count("| 1x | sgd | 1 |") == 2  # one run per preset and width, not 2 pooled
    names = sorted(p.name for p in sharpness_figures(store, tmp_path / "figs"))
    assert names == [
        "lambda_max_vs_width_toy_preset=paper.png",
        "lambda_max_vs_width_toy_preset=quick.png",
    ]
