"""Three ``sweep.py`` drivers started at once on one grid and one results folder (issue 20,
finding 1): each run is trained once (leases), no run is stored ``failed``, and the store
ends with the rows a single driver writes. The grid has seed groups, so whole seed ensembles
are claimed, skipped and trained concurrently too."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from results.store import Store
from tests.conftest import REPO
from tests.runners.fault_helpers import metric_rows, summary_without_wall

SPEC = """name: concurrent
preset: smoke
seeds: [0, 1]
optimizers: [base, sam]
entries:
  - workload: synthetic-regression
    widths: [1x, 2x]
    overrides: {num_epochs: 3, num_train: 512}
"""
N_RUNS = 2 * 2 * 2  # widths x optimizers x seeds


def _launch(spec: Path, results: Path) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    args = [sys.executable, str(REPO / "runners" / "sweep.py"), str(spec)]
    return subprocess.Popen(
        [*args, "--results", str(results), "--workers", "2"],
        cwd=spec.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _rows(results: Path) -> tuple[list, list]:
    """Each run's stored outcome (wall times left out) and every metric row."""
    db = results / "runs.sqlite"
    with Store(db) as store:
        runs = sorted(
            (r["id"], r["status"], r["n_params"], r["last_step"], r["error"],
             sorted(summary_without_wall(r["summary"]).items(), key=str))
            for r in store.runs()
        )  # fmt: skip
        assert all(store.lease(r[0]) is None for r in runs)  # nothing left claimed
    return runs, metric_rows(db)


def _trained_lines(out: str) -> list[str]:
    """Result lines of runs this driver's workers trained (done), not skipped ones."""
    return [ln for ln in out.splitlines() if ln.startswith("[") and "] done " in ln]


@pytest.mark.slow  # each trial spawns ~12 worker processes: ~1 min per trial on 2 busy cores
def test_three_sweep_drivers_on_one_grid_train_each_run_once(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    single = _launch(spec, tmp_path / "single")
    out, err = single.communicate(timeout=600)
    assert single.returncode == 0, out + err
    expected = _rows(tmp_path / "single")
    assert len(expected[0]) == N_RUNS and {r[1] for r in expected[0]} == {"done"}

    for trial in range(3):
        results = tmp_path / f"shared{trial}"
        drivers = [_launch(spec, results) for _ in range(3)]
        outputs = [d.communicate(timeout=600) for d in drivers]
        for d, (out, err) in zip(drivers, outputs):
            assert d.returncode == 0, out + err
            assert not [ln for ln in out.splitlines() if "] failed" in ln], out
            assert "Traceback" not in err, err
        trained = [ln for out, _ in outputs for ln in _trained_lines(out)]
        assert len(trained) == N_RUNS, trained  # each run trained by exactly one driver
        assert _rows(results) == expected, f"trial {trial}"
        leftovers = [p.name for p in (results / "checkpoints").iterdir() if "tmp" in p.name]
        assert leftovers == []
