"""``sweep.py --dry-run`` of a huge grid streams (issue 20, rough edges): the count comes by
multiplication, the first runs are listed as they are expanded, memory stays bounded. Before,
a 10^6-run grid printed nothing for minutes and grew without bound."""

from __future__ import annotations

import sys
import time
import tracemalloc

import pytest

from runners.engine.sweep_spec import SpecError, load_sweep, open_sweep
from runners.sweep import main as sweep_main

SEEDS = 1000
WIDTHS = [f"{w}x" for w in range(1, 51)]  # 50 widths
NOISE = [round(0.1 * i, 1) for i in range(1, 11)]  # 10 grid values
# 1000 seeds x 50 widths x 10 noise levels x (base + 1 rho) = 10^6 runs
HUGE = f"""name: huge
preset: smoke
seeds: [{", ".join(str(s) for s in range(SEEDS))}]
optimizers: [base, sam]
entries:
  - workload: synthetic-regression
    widths: [{", ".join(WIDTHS)}]
    grid: {{noise_std: {NOISE}}}
"""


def test_count_is_by_multiplication_and_matches_the_expansion_of_a_small_grid(tmp_path):
    spec = tmp_path / "small.yaml"
    spec.write_text(
        "preset: smoke\nseeds: [0, 1, 2]\noptimizers: [base, sam]\nentries:\n"
        "  - {workload: synthetic-regression, widths: [1x, 2x], rho: [0.05, 0.1],\n"
        "     grid: {noise_std: [0.5, 1.0]}, flags: {sam_start: [0, 0.5]}}\n"
    )
    plan = open_sweep(spec)
    # 2 noise x 2 widths x (1 base + 2 rhos x 2 sam_starts) x 3 seeds, counted by hand
    assert plan.count() == 2 * 2 * (1 + 2 * 2) * 3 == 60
    listed = list(plan)
    assert len(listed) == 60 and len({c.run_id for c in listed}) == 60
    assert [c.run_id for c in listed] == [c.run_id for c in load_sweep(spec).configs]
    first = next(iter(open_sweep(spec)))  # lazily: the first run without the others
    assert (first.width, first.optimizer, first.seed) == (1.0, "sgd", 0)


def test_count_checks_every_grid_point_before_listing(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        "preset: smoke\nseeds: [0]\noptimizers: [base]\nentries:\n"
        "  - {workload: synthetic-regression, widths: [1x], grid: {num_epochs: [2, 0]}}\n"
    )
    with pytest.raises(SpecError, match=r"at \{'num_epochs': 0\}: num_epochs must be >= 1"):
        open_sweep(spec).count()


def test_dry_run_of_a_million_runs_streams_in_bounded_memory(tmp_path, capsys, monkeypatch):
    spec = tmp_path / "huge.yaml"
    spec.write_text(HUGE)
    lines: list[tuple[float, str]] = []
    t0 = time.perf_counter()

    class Timed:  # when each line reaches stdout
        def write(self, text: str) -> int:
            lines.extend((time.perf_counter() - t0, ln) for ln in text.splitlines() if ln)
            return len(text)

        def flush(self) -> None:
            pass

    monkeypatch.setattr(sys, "stdout", Timed())
    tracemalloc.start()
    try:
        code = sweep_main([str(spec), "--results", str(tmp_path / "out"), "--dry-run"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    wall = time.perf_counter() - t0
    assert code == 0
    err = capsys.readouterr().err
    assert err == "sweep.py: warning: 1,000,000 runs; listing the first 10,000 not finished\n"
    assert lines[0][1].startswith("sweep huge: 1,000,000 run(s) (counted, not expanded")
    listed = [ln for _, ln in lines if " id " in ln]
    assert len(listed) == 10_000 and lines[-1][1] == "  ... at most 990,000 more run(s) not shown"
    # spec order: width 1x, sgd, noise 0.1 (the first grid point), seeds 0, 1, ...
    assert listed[0].startswith("  new      synthetic-regression sgd w1x s0 ")
    assert listed[999].startswith("  new      synthetic-regression sgd w1x s999 ")
    first_run_at = next(t for t, ln in lines if " id " in ln)
    print(
        f"first run at {first_run_at:.2f}s, all {wall:.1f}s, peak {peak / 1e6:.0f} MB",
        file=sys.__stderr__,
    )
    assert first_run_at < 10 and wall < 60  # a few seconds unloaded; 2 busy cores are slower
    assert peak < 200e6
    assert not (tmp_path / "out").exists()
