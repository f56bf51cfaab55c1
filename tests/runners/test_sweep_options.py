"""sweep.py --threads (default: the user's $OMP_NUM_THREADS) and --dry-run lines that show
what tells the runs apart (grid values, non-default flags)."""

from __future__ import annotations

import argparse
import textwrap

import pytest

from runners.engine.sweep_options import positive_int, worker_threads
from runners.sweep import main


def test_threads_flag_then_omp_num_threads_then_cores_split(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert worker_threads(5, n_workers=2) == 5  # --threads wins
    assert worker_threads(None, n_workers=2) == 3  # the user's limit, not 8 // 2
    monkeypatch.setenv("OMP_NUM_THREADS", "auto")  # not a count: ignored
    assert worker_threads(None, n_workers=3) == 2  # 8 // 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert worker_threads(None, n_workers=16) == 1  # never 0


@pytest.mark.parametrize("bad", ["0", "-2", "two"])
def test_threads_must_be_a_positive_integer(bad):
    with pytest.raises(argparse.ArgumentTypeError, match=">= 1"):
        positive_int(bad)


def test_dry_run_shows_grid_values_and_non_default_flags(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text(
        textwrap.dedent(
            """
            preset: smoke
            seeds: [0]
            optimizers: [sam]
            rho: 0.05
            entries:
              - workload: synthetic-regression
                widths: [1x]
                grid: {num_epochs: [2, 3]}
                flags: {adaptive: true}
              - workload: synthetic-regression
                widths: [2x]
            """
        )
    )
    assert main([str(spec), "--dry-run", "--results", str(tmp_path / "r")]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("  new")]
    assert len(lines) == 3
    w1 = sorted(ln.split(" id ")[0].split("w1x s0")[1].split() for ln in lines if "w1x" in ln)
    assert w1 == [["adaptive=True", "num_epochs=2"], ["adaptive=True", "num_epochs=3"]]
    (w2,) = [ln for ln in lines if "w2x" in ln]
    assert "adaptive" not in w2  # at its default there
    assert "num_epochs=" in w2  # the smoke preset's value: it differs from the grid's
    assert not (tmp_path / "r").exists()  # a dry run writes nothing
