"""``Execution.checkpoint_every_s`` (run.py ``--checkpoint-every``, issue 21 "Where time goes"):
checkpoints at evaluations are skipped until that much wall time has passed, the last epoch's
is always written, and the run's stored results do not change."""

from __future__ import annotations

import torch

import runners.engine.train as train
from results.store import Store
from runners.engine.checkpoint import load_checkpoint
from runners.engine.train import Execution, checkpoint_path, train_run
from runners.run import main
from tests.runners.fault_helpers import metric_rows, run_config, summary_without_wall, synthetic

EPOCHS = 5


def _train(tmp_path, monkeypatch, every_s: float):
    """A 5-epoch SAM run; returns (epochs whose checkpoint was written, outcome, results)."""
    written: list[int] = []
    real_save = train.save_checkpoint

    def save(path, payload):
        written.append(payload["state"]["epoch"])
        real_save(path, payload)

    monkeypatch.setattr(train, "save_checkpoint", save)
    workload = synthetic(num_epochs=EPOCHS)
    results = tmp_path / f"every-{every_s:g}"
    ex = Execution(results_dir=results, progress=False, checkpoint_every_s=every_s)
    torch.manual_seed(0)
    with Store(results / "runs.sqlite") as store:
        out = train_run(workload, run_config(workload), store, ex)
    return written, out, results


def test_default_writes_a_checkpoint_at_every_evaluation(tmp_path, monkeypatch):
    written, out, _ = _train(tmp_path, monkeypatch, 0.0)
    assert out.status == "done"
    assert written == [1, 2, 3, 4, 5]  # eval_every 1: one per epoch


def test_a_long_interval_writes_only_the_last_epochs_and_changes_no_result(tmp_path, monkeypatch):
    every, out_every, res_every = _train(tmp_path, monkeypatch, 0.0)
    rare, out_rare, res_rare = _train(tmp_path, monkeypatch, 3600.0)
    assert rare == [EPOCHS]
    payload, _ = load_checkpoint(checkpoint_path(res_rare, out_rare.run_id), out_rare.run_id)
    assert (
        payload["state"]["epoch"] == EPOCHS
        and payload["state"]["step"] == out_rare.summary["steps"]
    )
    assert out_rare.run_id == out_every.run_id  # execution only: not in the run id
    assert summary_without_wall(out_rare.summary) == summary_without_wall(out_every.summary)
    assert metric_rows(res_rare / "runs.sqlite") == metric_rows(res_every / "runs.sqlite")


def test_run_py_passes_checkpoint_every(tmp_path, monkeypatch):
    seen: list[float] = []

    import runners.run as run

    def spy(workload, cfg, store, ex):
        seen.append(ex.checkpoint_every_s)
        return train_run(workload, cfg, store, ex)

    monkeypatch.setattr(run, "train_run", spy)
    args = ["--domain", "synthetic", "--preset", "smoke", "--optimizer", "base", "--no-progress"]
    assert main([*args, "--results", str(tmp_path / "a"), "--checkpoint-every", "90"]) == 0
    assert main([*args, "--results", str(tmp_path / "b")]) == 0
    assert seen == [90.0, 0.0]


def test_sweep_py_passes_checkpoint_every_to_its_workers(tmp_path, monkeypatch):
    import runners.sweep as sweep
    from runners.engine.executors import _replace_device

    seen: list[Execution] = []
    monkeypatch.setattr(sweep, "run_local", lambda tasks, store, ex, *a, **k: seen.append(ex))
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "name: t\npreset: smoke\nseeds: [0]\noptimizers: [base]\n"
        "entries:\n  - {workload: synthetic-regression, widths: [1x]}\n"
    )
    out = ["--results", str(tmp_path / "r")]
    assert sweep.main([str(spec), *out, "--checkpoint-every", "60"]) == 0
    assert [ex.checkpoint_every_s for ex in seen] == [60.0]
    # each worker's Execution (its device set per slot) keeps it
    assert _replace_device(seen[0], "cuda:1").checkpoint_every_s == 60.0
    assert sweep.main([str(spec), *out, "--checkpoint-every", "-1"]) == 2
