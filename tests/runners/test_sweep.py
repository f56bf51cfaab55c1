"""runners/sweep.py: spec checking, skip and resume, fault isolation, and the Ray executor."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from domains import create_workload
from runners import run as run_cli_module
from runners.engine.sweep_spec import load_sweep
from runners.sweep import build_parser, main
from tests.conftest import REPO, run_cli
from tests.results.known_store import start_toy_run

SMOKE_SPEC = """
name: t
preset: smoke
seeds: [0]
optimizers: [base, sam]
entries:
  - workload: synthetic-regression
    widths: [1x]
"""


def _write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute(
            "SELECT workload, optimizer, seed, status, error FROM runs ORDER BY started_at, id"
        ).fetchall()


# ----------------------------------------------------------------------------- spec checking
HEAD = "name: t\npreset: smoke\nseeds: [0]\noptimizers: [base, sam]\n"


def _entry(fields: str) -> str:
    return HEAD + "entries:\n  - {workload: synthetic-regression, widths: [1x]" + fields + "}\n"


BAD_SPECS = [
    (_entry("").replace("seeds:", "seed:"), "t.yaml: unknown key 'seed'; did you mean 'seeds'?"),
    (_entry(", widht: [2x]"), "entries[0]: unknown key 'widht'; did you mean 'widths'?"),
    (_entry("").replace("regression", "regresion"), "unknown workload 'synthetic-regresion'"),
    (_entry("").replace("[1x]", "[1x, 4y]"), "width must be a positive multiplier"),
    (_entry(", rho: -1"), "rho must be 'paper', 'default', or numbers >= 0, got -1"),
    (
        _entry(", overrides: {num_epoch: 3}"),
        "unknown config key 'num_epoch' for synthetic-regression; did you mean 'num_epochs'?",
    ),
    (_entry(", overrides: {num_epochs: abc}"), "num_epochs expects an integer"),
    (_entry(", optimizers: [sgdd]"), "unknown optimizer 'sgdd'"),
    (_entry(", preset: quik"), "unknown preset 'quik'"),
    (_entry(", flags: {precison: bf16}"), "unknown key 'precison'; did you mean 'precision'?"),
    (HEAD + "entries: [\n", "not valid YAML"),
]


@pytest.mark.parametrize("text,message", BAD_SPECS)
def test_bad_spec_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, text, message):
    spec = _write(tmp_path, text, "t.yaml")
    assert main([str(spec), "--results", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("sweep.py: error: "), err
    assert message in err
    assert not (tmp_path / "out").exists()


def test_bad_cli_input_exit_2(tmp_path, capsys):
    spec = _write(tmp_path, SMOKE_SPEC)
    for argv, message in (
        (["--rho-grid", "-1"], "rho must be"),
        (["--workers", "0"], "--workers must be >= 1"),
        (["--executor", "slurm"], "invalid choice"),
    ):
        assert main([str(spec), "--results", str(tmp_path / "out"), *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    assert main([str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read sweep spec" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_expansion_matches_run_py_and_rho_grid_modes(tmp_path):
    spec = _write(
        tmp_path,
        """
        preset: smoke
        seeds: [0, 1]
        optimizers: [base, sam]
        entries:
          - {workload: synthetic-regression, widths: [1x, 3x], rho: [0.05, 0.1]}
          - {workload: synthetic-regression, widths: "1x", rho: 0.05}   # all named above: no new runs
        """,
    )
    sweep = load_sweep(spec)
    assert len(sweep.configs) == 2 * (1 + 2) * 2  # widths x (base + 2 rhos) x seeds
    args, _ = run_cli_module.build_parser().parse_known_args(
        ["--width", "1x,3x", "--optimizer", "both", "--rho", "0.05,0.1", "--seeds", "0,1"]
    )
    from_run_py = run_cli_module._plan(
        create_workload("synthetic-regression", "smoke"), args, "smoke"
    )
    assert [c.run_id for c in sweep.configs] == [c.run_id for c in from_run_py]

    grid = create_workload("synthetic-regression", "smoke").config.rho_grid
    paper = load_sweep(spec, rho_grid="paper").configs
    assert sorted({c.rho for c in paper if c.optimizer == "sam"}) == sorted(grid)
    assert len(paper) == 2 * (1 + len(grid)) * 2
    assert {c.rho for c in load_sweep(spec, rho_grid="0.2").configs} == {0.0, 0.2}
    default = create_workload("synthetic-regression", "smoke").config.rho
    assert {c.rho for c in load_sweep(spec, rho_grid="default").configs} == {0.0, default}
    assert build_parser().parse_args([str(spec), "--rho-grid"]).rho_grid == "paper"


def test_grid_axis_overrides_and_flags(tmp_path):
    spec = _write(
        tmp_path,
        """
        preset: smoke
        seeds: [3]
        optimizers: [sam]
        entries:
          - workload: synthetic-regression
            widths: [2x]
            overrides: {num_epochs: 1}
            grid: {noise_std: [0.5, 1.0]}
            flags: {adaptive: true, m_sharpness: 16}
        """,
    )
    configs = load_sweep(spec).configs
    assert sorted(c.workload_config["noise_std"] for c in configs) == [0.5, 1.0]
    assert all(c.workload_config["num_epochs"] == 1 and c.adaptive for c in configs)
    assert all(c.m_sharpness == 16 and c.width == 2.0 and c.seed == 3 for c in configs)


# ------------------------------------------------------------------------------- execution
def test_sweep_runs_then_skips_everything_and_bad_spec_keeps_store(tmp_path):
    spec = _write(tmp_path, SMOKE_SPEC)
    first = run_cli([str(spec), "--results", "out", "--workers", "2"], tmp_path, script="sweep.py")
    assert first.returncode == 0, first.stderr
    assert "2 to run" in first.stdout and "2 done" in first.stdout
    db = tmp_path / "out" / "runs.sqlite"
    assert [r[3] for r in _rows(db)] == ["done", "done"]
    before = db.read_bytes()
    again = run_cli([str(spec), "--results", "out"], tmp_path, script="sweep.py")
    assert again.returncode == 0 and "2 done, 0 diverged (skipped); 0 to run" in again.stdout
    assert "nothing to run" in again.stdout and db.read_bytes() == before

    bad = _write(tmp_path, SMOKE_SPEC.replace("widths", "widht"), "bad.yaml")
    res = run_cli([str(bad), "--results", "out"], tmp_path, script="sweep.py")
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert db.read_bytes() == before


FAULTS_DRIVER = '''
"""A sweep driver with a test-only workload; spawned workers import this file too, so the
workload is registered there as well. data_seed 13 kills the worker (os._exit) in its second
epoch; data_seed 14 raises inside the training loop."""
import os
import sys

from domains import create_workload, register


@register("test-sweep-faults", domain="synthetic", presets=("smoke",))
def faults(preset="smoke", **overrides):
    workload = create_workload("synthetic-regression", preset, **overrides)
    base = type(workload)

    class Faulty(base):
        def train_batches(self, epoch, generator):
            if self.config.data_seed == 13 and epoch == 1:
                os._exit(3)
            if self.config.data_seed == 14:
                raise RuntimeError("boom from the test workload")
            yield from base.train_batches(self, epoch, generator)

    workload.__class__ = Faulty
    return workload


if __name__ == "__main__":
    from runners.sweep import main

    sys.exit(main())
'''


def test_crash_raise_and_divergence_do_not_stop_the_sweep(tmp_path):
    (tmp_path / "driver.py").write_text(FAULTS_DRIVER)
    spec = _write(
        tmp_path,
        """
        preset: smoke
        seeds: [0]
        optimizers: [base]
        entries:
          - {workload: test-sweep-faults, widths: [1x], grid: {data_seed: [13, 14, 0]}}
          - {workload: synthetic-regression, widths: [1x], overrides: {learning_rate: 1.0e+6}}
        """,
    )
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    res = subprocess.run(
        [sys.executable, "driver.py", str(spec), "--results", "out", "--workers", "1"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 1, res.stdout + res.stderr  # failures, and every run was tried
    assert "1 done, 1 diverged, 2 failed" in res.stdout
    with sqlite3.connect(tmp_path / "out" / "runs.sqlite") as con:
        rows = dict(
            con.execute(
                "SELECT json_extract(config, '$.run.workload_config.data_seed') || '/' || "
                "workload, status || ': ' || coalesce(error, '') FROM runs"
            ).fetchall()
        )
    assert rows["13/test-sweep-faults"] == "failed: worker process exited with code 3"
    assert rows["14/test-sweep-faults"] == "failed: RuntimeError: boom from the test workload"
    assert rows["0/test-sweep-faults"] == "done: "
    assert rows["0/synthetic-regression"].startswith("diverged: non-finite training loss")


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(p) for p in (task / "children").read_text().split()]
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _epochs_logged(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=1) as con:
            return con.execute("SELECT COUNT(DISTINCT step) FROM metrics").fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc")
def test_killed_sweep_resumes_the_half_done_run_from_its_checkpoint(tmp_path):
    spec = _write(
        tmp_path,
        """
        preset: quick
        seeds: [0]
        optimizers: [sam]
        entries:
          - workload: synthetic-regression
            widths: [1x]
            overrides: {num_train: 1024, num_val: 512, num_test: 512, batch_size: 64,
                        num_epochs: 30, warmup_steps: 8}
        """,
    )
    args = [sys.executable, str(REPO / "runners" / "sweep.py"), str(spec), "--results", "out"]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    driver = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True)
    db = tmp_path / "out" / "runs.sqlite"
    deadline = time.time() + 120
    while _epochs_logged(db) < 5 and time.time() < deadline and driver.poll() is None:
        time.sleep(0.05)
    assert driver.poll() is None, "sweep finished before it could be killed; make it longer"
    workers = _children(driver.pid)
    assert workers
    os.kill(driver.pid, signal.SIGKILL)
    driver.communicate()
    deadline = time.time() + 30
    while any(_alive(p) for p in workers) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in workers), "workers outlived the killed driver"
    assert [r[3] for r in _rows(db)] == ["running"]

    res = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 to run (0 new, 1 interrupted" in res.stdout
    assert "resumed from epoch" in res.stdout + res.stderr
    assert [r[3] for r in _rows(db)] == ["done"]
    assert _epochs_logged(db) == 30


def _start_local_ray():
    """A local Ray of 2 CPUs whose workers import this checkout; skips where none can start."""
    ray = pytest.importorskip("ray")
    try:
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}},
        )
    except Exception as exc:  # no local Ray here (sandbox, ports): nothing to test against
        pytest.skip(f"ray cannot start: {exc}")
    return ray


def test_ray_executor_writes_runs_into_the_driver_store(tmp_path, capsys):
    ray = _start_local_ray()
    try:
        spec = _write(
            tmp_path, SMOKE_SPEC.replace("[base, sam]", "[base]").replace("[0]", "[0, 1]")
        )
        rc = main([str(spec), "--results", str(tmp_path / "out"), "--executor", "ray"])
    finally:
        ray.shutdown()
    out = capsys.readouterr().out
    assert rc == 0, out
    rows = _rows(tmp_path / "out" / "runs.sqlite")
    assert sorted((r[1], r[2], r[3]) for r in rows) == [("sgd", 0, "done"), ("sgd", 1, "done")]
    with sqlite3.connect(tmp_path / "out" / "runs.sqlite") as con:
        per_run = con.execute("SELECT COUNT(DISTINCT step) FROM metrics GROUP BY run_id").fetchall()
    assert per_run == [(2,), (2,)]  # smoke: 2 epochs, one metric row set per epoch


def _add_run(store, run_id: str, seed: int) -> None:
    start_toy_run(store, run_id, seed=seed, preset="smoke", config={"seed": seed}, n_params=100)
    store.log_metrics(run_id, 10, 1.0, {"train/loss_first_pass": 0.7, "val/mse": 0.5 + seed})
    store.finish_run(run_id, "done", summary={"target": "mse", "best/val_mse": 0.5 + seed})


def test_store_import_run_copies_a_run_and_is_idempotent(tmp_path):
    from results.store import Store

    with Store(tmp_path / "task.sqlite") as task, Store(tmp_path / "driver.sqlite") as driver:
        _add_run(task, "r1", seed=1)
        _add_run(driver, "r0", seed=0)
        row, metrics = task.get_run("r1"), task.metrics("r1")
        driver.import_run(row, metrics)
        driver.import_run(row, metrics)  # a retried import changes nothing
        assert driver.get_run("r1") == row and driver.metrics("r1") == metrics
        assert driver.counts() == {"runs": 2, "metrics": 4}
        assert driver.metrics("r0")[1]["value"] == 0.5  # the other run is untouched
        with pytest.raises(ValueError, match="unknown columns"):
            driver.import_run({**row, "colour": "red"}, [])


def _metric_rows(db: Path) -> dict[str, list[tuple]]:
    """Per run (by optimizer): every metric row except wall-clock time, in step order."""
    with sqlite3.connect(db) as con:
        rows = con.execute(
            "SELECT r.optimizer, m.step, m.key, m.value FROM metrics m JOIN runs r "
            "ON r.id = m.run_id WHERE m.key != 'time/wall_s' ORDER BY r.optimizer, m.step, m.key"
        ).fetchall()
    out: dict[str, list[tuple]] = {}
    for opt, step, key, value in rows:
        out.setdefault(opt, []).append((step, key, value))
    return out


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc")
def test_sigkilled_worker_run_resumes_and_matches_an_uninterrupted_sweep(tmp_path):
    """kill -9 of the worker mid-run (not the driver): the driver records that run as failed
    and finishes; the rerun repeats nothing that finished, resumes the killed run from its
    checkpoint, and every metric row then equals an uninterrupted sweep's (CPU, same seed)."""
    spec = _write(
        tmp_path,
        """
        preset: quick
        seeds: [0]
        optimizers: [sgd, sam]
        entries:
          - workload: synthetic-regression
            widths: [1x]
            overrides: {num_train: 1024, num_val: 512, num_test: 512, batch_size: 64,
                        num_epochs: 24, warmup_steps: 8}
        """,
    )
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")

    def sweep(out: str, **kw) -> subprocess.Popen:
        args = [sys.executable, str(REPO / "runners" / "sweep.py"), str(spec)]
        return subprocess.Popen(
            args + ["--results", out, "--workers", "1"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **kw,
        )

    ref = sweep("ref")  # the uninterrupted sweep, in its own store
    killed = sweep("out")
    db = tmp_path / "out" / "runs.sqlite"

    def sam_epochs() -> int:
        try:
            with sqlite3.connect(db, timeout=1) as con:
                return con.execute(
                    "SELECT COUNT(DISTINCT m.step) FROM metrics m JOIN runs r ON r.id = m.run_id "
                    "WHERE r.optimizer = 'sam'"
                ).fetchone()[0]
        except sqlite3.Error:
            return 0

    deadline = time.time() + 180
    while sam_epochs() < 6 and time.time() < deadline and killed.poll() is None:
        time.sleep(0.05)
    assert killed.poll() is None, "sweep finished before its worker could be killed"
    workers = [  # the one worker (multiprocessing also starts a resource tracker)
        p
        for p in _children(killed.pid)
        if _alive(p) and b"resource_tracker" not in Path(f"/proc/{p}/cmdline").read_bytes()
    ]
    assert len(workers) == 1
    os.kill(workers[0], signal.SIGKILL)
    out, err = killed.communicate(timeout=120)
    assert killed.returncode == 1, out + err  # a failed run: exit 1, and the driver went on
    status = {r[1]: (r[3], r[4]) for r in _rows(db)}
    assert status["sgd"][0] == "done"
    assert status["sam"] == ("failed", "worker process killed by SIGKILL")
    with sqlite3.connect(db) as con:
        sgd_before = con.execute("SELECT * FROM runs WHERE optimizer = 'sgd'").fetchone()

    rerun = sweep("out")
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, out + err
    assert "1 to run (0 new, 0 interrupted, 1 failed before)" in out
    assert "resumed from epoch" in out + err
    ref.communicate(timeout=300)
    assert ref.returncode == 0
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("SELECT * FROM runs WHERE optimizer = 'sgd'").fetchone() == sgd_before
    assert {r[1]: r[3] for r in _rows(db)} == {"sgd": "done", "sam": "done"}
    got, want = _metric_rows(db), _metric_rows(tmp_path / "ref" / "runs.sqlite")
    assert len(got["sam"]) == len(want["sam"]) > 0
    assert got == want


@pytest.mark.slow  # a second local Ray start (~2 min on 2 loaded cores)
def test_ray_driver_leases_its_runs_and_skips_one_held_by_a_live_process(tmp_path, capsys):
    """Issue 20: the Ray path claims each run before submitting it, like the local executor;
    a run another live process holds is not trained twice."""
    import socket
    import threading

    from results.store import Store

    pytest.importorskip("ray")
    spec = _write(tmp_path, SMOKE_SPEC.replace("[base, sam]", "[base]").replace("[0]", "[0, 1]"))
    configs = load_sweep(spec).configs
    held_id = next(c.run_id for c in configs if c.seed == 1)
    store = Store(tmp_path / "out" / "runs.sqlite")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        assert store.claim_runs(
            [held_id],
            owner="other",
            host=socket.gethostname(),
            pid=other.pid,
            is_dead=lambda row: False,
        ) == [held_id]
        stop = threading.Event()

        def beat() -> None:  # the other holder stays live however slowly Ray starts here
            beater = Store(tmp_path / "out" / "runs.sqlite")
            while not stop.wait(5.0):
                beater.heartbeat("other")

        threading.Thread(target=beat, daemon=True).start()
        ray = _start_local_ray()
        try:
            rc = main([str(spec), "--results", str(tmp_path / "out"), "--executor", "ray"])
        finally:
            ray.shutdown()
    finally:
        stop.set()
        other.kill()
    out = capsys.readouterr().out
    assert rc == 0, out
    rows = _rows(tmp_path / "out" / "runs.sqlite")
    assert [(r[2], r[3]) for r in rows] == [(0, "done")]  # seed 1 was never submitted
    assert "being trained by" in out and "skipped" in out
    assert store.lease(next(c.run_id for c in configs if c.seed == 0)) is None  # released
