"""sweep.py's local executor trains a run's seeds as one seed ensemble (one worker process,
``train_seeds``) where the workload allows it, as run.py does; ``--no-seed-ensemble`` trains
each seed alone. Before this, every sweep run was its own process, one seed at a time."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

import pytest

from domains import create_workload
from runners.engine.config import RunConfig
from runners.engine.plan import expand_grid, seed_groups
from runners.run import main as run_main
from runners.sweep import main as sweep_main

SPEC = """name: sg
preset: smoke
seeds: {seeds}
optimizers: [base, sam]
entries:
  - workload: synthetic-regression
    widths: [1x, 2x]
"""
GRID = [
    "--workload",
    "synthetic-regression",
    "--width",
    "1x,2x",
    "--optimizer",
    "both",
    "--preset",
    "smoke",
]  # run.py's same grid


def _spec(tmp_path: Path, seeds: str = "[0, 1, 2]") -> Path:
    path = tmp_path / f"spec{seeds.count(',')}.yaml"
    path.write_text(SPEC.format(seeds=seeds))
    return path


def _runs(db: Path) -> dict[str, dict]:
    """run id -> {seed, status, summary, finished_at}."""
    with contextlib.closing(sqlite3.connect(db)) as con:
        rows = con.execute("SELECT id, seed, status, summary, ended_at FROM runs").fetchall()
    return {
        r[0]: {"seed": r[1], "status": r[2], "summary": json.loads(r[3] or "{}"), "end": r[4]}
        for r in rows
    }


def _configs(seeds: list[int]) -> list[RunConfig]:
    workload = create_workload("synthetic-regression", "smoke")
    kw = {"optimizers": ["base", "sam"], "rhos": [workload.config.rho]}
    return expand_grid(workload, "smoke", widths=[1.0, 2.0], seeds=seeds, **kw)


# ------------------------------------------------------------------------------ grouping
def test_seed_groups_join_runs_that_differ_only_in_seed_wherever_they_are():
    configs = _configs([0, 1, 2])  # width x (sgd, sam) x seed: 4 experiments x 3 seeds
    shuffled = configs[::2] + configs[1::2]  # seeds of one experiment no longer adjacent
    groups = seed_groups(shuffled, lambda c: True)
    assert len(groups) == 4 and all(len(g) == 3 for g in groups)
    for g in groups:
        assert len({(c.width, c.optimizer, c.rho) for c in g}) == 1
        assert sorted(c.seed for c in g) == [0, 1, 2]
    assert [c.run_id for c in groups[0]] == [c.run_id for c in shuffled if c in groups[0]]
    assert sorted(c.run_id for g in groups for c in g) == sorted(c.run_id for c in configs)
    # a run that may not be grouped (here: every SAM run) trains alone
    alone = seed_groups(configs, lambda c: c.optimizer != "sam")
    assert sorted(len(g) for g in alone) == [1] * 6 + [3, 3]


# --------------------------------------------------------------------------- end to end
def _sweep(spec: Path, results: Path, *extra: str) -> None:
    assert sweep_main([str(spec), "--results", str(results), "--workers", "2", *extra]) == 0


def _sequential(results: Path, seeds: str, widths: str = "1x,2x", opt: str = "both") -> None:
    """run.py in-process, each seed alone: the reference (and a way to pre-train a seed)."""
    argv = ["--workload", "synthetic-regression", "--preset", "smoke", "--width", widths]
    argv += ["--optimizer", opt, "--seeds", seeds, "--results", str(results)]
    assert run_main([*argv, "--no-seed-ensemble", "--no-progress"]) == 0


def _same_final_metrics(runs: dict[str, dict], reference: dict[str, dict]) -> None:
    assert set(reference) == set(runs)  # the same experiments: the same run ids
    for run_id, ref in reference.items():
        for key in ("final/val_mse", "final/test_mse", "best/val_mse", "best/test_mse"):
            assert runs[run_id]["summary"][key] == pytest.approx(ref["summary"][key], rel=1e-5)


SMALL = SPEC.replace("[base, sam]", "[sam]").replace("[1x, 2x]", "[1x]")  # one experiment


def test_seed_group_trains_in_one_worker_matches_sequential_and_resumes(tmp_path, capsys):
    """One SAM experiment x 3 seeds (two worker spawns in all, to stay fast)."""
    spec = tmp_path / "small.yaml"
    spec.write_text(SMALL.format(seeds="[0, 1, 2]"))
    ens, seq = tmp_path / "ens", tmp_path / "seq"
    _sweep(spec, ens)
    out = capsys.readouterr().out
    assert "3 run(s) as 1 task(s): 1 seed ensemble(s)" in out, out
    assert "on 1 worker(s)" in out  # one task: one worker, whatever --workers says
    assert len([ln for ln in out.splitlines() if ln.startswith("[")]) == 3  # a line per run
    runs = _runs(ens / "runs.sqlite")
    # (a) the three seeds were trained together: train_seeds stores the ensemble's size
    assert [r["status"] for r in runs.values()] == ["done"] * 3
    assert [r["summary"].get("seed_ensemble") for r in runs.values()] == [3] * 3
    # (b) the run ids and final metrics of each seed trained alone
    _sequential(seq, "0,1,2", widths="1x", opt="sam")
    reference = _runs(seq / "runs.sqlite")
    assert all("seed_ensemble" not in r["summary"] for r in reference.values())
    _same_final_metrics(runs, reference)
    # (c) a rerun trains nothing and writes nothing
    capsys.readouterr()
    before = (ens / "runs.sqlite").read_bytes()
    _sweep(spec, ens)
    assert "nothing to run" in capsys.readouterr().out
    assert (ens / "runs.sqlite").read_bytes() == before

    # (d) seed 1 already done (trained alone): the sweep trains seeds 0 and 2 as one group
    part = tmp_path / "part"
    _sequential(part, "1", widths="1x", opt="sam")
    (seed1,) = _runs(part / "runs.sqlite").items()
    capsys.readouterr()
    _sweep(spec, part)
    out = capsys.readouterr().out
    assert "1 done, 0 diverged (skipped); 2 to run" in out, out
    assert "2 run(s) as 1 task(s): 1 seed ensemble(s)" in out
    runs = _runs(part / "runs.sqlite")
    assert runs[seed1[0]] == seed1[1]  # untouched
    assert sorted(r["summary"].get("seed_ensemble", 0) for r in runs.values()) == [0, 2, 2]
    _same_final_metrics(runs, reference)


def test_no_seed_ensemble_flag_makes_one_task_per_run(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC.format(seeds="[0, 1, 2]"))
    argv = [str(spec), "--results", str(tmp_path / "r"), "--dry-run", "--workers", "8"]
    assert sweep_main(argv) == 0
    out = capsys.readouterr().out
    assert "12 run(s) as 4 task(s): 4 seed ensemble(s)" in out and "on 4 worker(s)" in out
    assert sweep_main([*argv, "--no-seed-ensemble"]) == 0
    out = capsys.readouterr().out
    assert "task(s)" not in out and "on 8 worker(s)" in out
    assert not (tmp_path / "r").exists()


@pytest.mark.slow  # ~30 s with groups, ~110 s without (12 spawned workers) on 2 busy cores
def test_brief_grid_with_and_without_groups(tmp_path, capsys):
    """3 seeds x 2 widths x base+sam: 4 tasks of 3 seeds; the same final metrics as
    ``--no-seed-ensemble`` (12 tasks); a rerun trains nothing."""
    spec = _spec(tmp_path)
    _sweep(spec, tmp_path / "ens")
    assert "12 run(s) as 4 task(s): 4 seed ensemble(s)" in capsys.readouterr().out
    runs = _runs(tmp_path / "ens" / "runs.sqlite")
    assert [r["summary"].get("seed_ensemble") for r in runs.values()] == [3] * 12
    _sweep(spec, tmp_path / "seq", "--no-seed-ensemble")
    reference = _runs(tmp_path / "seq" / "runs.sqlite")
    assert all("seed_ensemble" not in r["summary"] for r in reference.values())
    _same_final_metrics(runs, reference)
    capsys.readouterr()
    _sweep(spec, tmp_path / "ens")
    assert "nothing to run" in capsys.readouterr().out
