"""The store's contract and the tables built from it alone."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from results.analysis import experiments
from results.store import Store
from results.tables import workload_table
from tests.results.known_store import start_toy_run


def _add(store, run_id, *, optimizer, width, seed, rho, val, test, mode="min"):
    start_toy_run(
        store,
        run_id,
        optimizer=optimizer,
        width=width,
        seed=seed,
        rho=rho,
        config={"seed": seed},
        n_params=int(100 * width),
    )
    store.finish_run(
        run_id,
        "done",
        summary={"target": "mse", "target_mode": mode, "best/val_mse": val, "best/test_mse": test},
    )


def test_rho_is_chosen_on_validation_not_test(tmp_path):
    store = Store(tmp_path / "r.sqlite")
    for s in (0, 1):
        _add(store, f"b{s}", optimizer="sgd", width=1, seed=s, rho=0, val=1.10, test=1.10 + s / 100)
        # rho 0.1: better on validation, worse on test; rho 0.5: the other way round.
        _add(
            store, f"a{s}", optimizer="sam", width=1, seed=s, rho=0.1, val=1.00, test=1.05 + s / 100
        )
        _add(store, f"c{s}", optimizer="sam", width=1, seed=s, rho=0.5, val=1.20, test=0.90)
    ((row,),) = [e.rows for e in experiments(store, "toy")]
    assert row.rho == 0.1
    assert row.gain[0] == pytest.approx(0.05)  # base - SAM for a min metric, paired by seed
    assert row.gain[1] == pytest.approx(0.0, abs=1e-12)
    assert row.base[0] == pytest.approx(1.105) and row.seeds == 2
    table = workload_table(store, "toy")
    assert "| 1x | 100 |" in table and "| 0.1 |" in table


def test_gain_sign_for_a_max_metric(tmp_path):
    store = Store(tmp_path / "r.sqlite")
    _add(store, "b", optimizer="sgd", width=2, seed=0, rho=0, val=0.8, test=0.80, mode="max")
    _add(store, "s", optimizer="sam", width=2, seed=0, rho=0.05, val=0.9, test=0.83, mode="max")
    ((row,),) = [e.rows for e in experiments(store, "toy")]
    assert row.gain[0] == pytest.approx(0.03)


def _start_plain(store, run_id):
    start_toy_run(store, run_id, domain="d", width=1, rho=0, preset="p", git_commit="", hardware="")


def test_failed_runs_are_left_out_and_reruns_update_the_row(tmp_path):
    store = Store(tmp_path / "r.sqlite")
    _start_plain(store, "x")
    store.finish_run("x", "failed", error="boom")
    assert experiments(store, "toy") == []
    _start_plain(store, "x")
    assert store.get_run("x")["status"] == "running" and store.get_run("x")["error"] is None
    assert store.counts()["runs"] == 1
    with pytest.raises(ValueError):
        store.finish_run("x", "running")


def test_metrics_rows_are_unique_per_step_and_key(tmp_path):
    store = Store(tmp_path / "r.sqlite")
    store.log_metrics("x", 10, 1, {"val/mse": 1.0})
    store.log_metrics("x", 10, 1, {"val/mse": 2.0})
    store.log_metrics("x", 20, 2, {"val/mse": 3.0})
    store.delete_metrics_after("x", 10)
    assert store.metrics("x") == [{"step": 10, "epoch": 1.0, "key": "val/mse", "value": 2.0}]


def _writer(path, k):
    store = Store(path)
    for i in range(100):
        store.log_metrics(f"run{k}", i, None, {"a": i, "b": -i})
    store.close()


def test_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / "r.sqlite"
    Store(path).close()
    procs = [mp.get_context("spawn").Process(target=_writer, args=(path, k)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert Store(path).counts()["metrics"] == 4 * 100 * 2
