"""runners/sharpness.py on a tiny stored run, and run.py --measure-sharpness."""

from __future__ import annotations

import math

from results.store import Store
from runners.run import main as run_main
from runners.sharpness import main as sharpness_main
from tests.conftest import run_cli

SMOKE = ["--domain", "synthetic", "--preset", "smoke", "--no-progress", "--width", "1x"]


def test_measure_a_stored_run_then_bad_ids_exit_2(tmp_path, capsys, monkeypatch):
    assert run_main(SMOKE + ["--optimizer", "base", "--results", str(tmp_path / "out")]) == 0
    store = Store(tmp_path / "out" / "runs.sqlite")
    (run,) = store.runs()
    store.close()
    args = ["--results", "out", "--measures", "lambda_max,worst_l2", "--n-examples", "128"]
    res = run_cli([run["id"], *args, "--m", "64"], tmp_path, script="sharpness.py")
    assert res.returncode == 0, res.stderr
    assert run["id"] in res.stdout and "lambda_max" in res.stdout
    store = Store(tmp_path / "out" / "runs.sqlite")
    rows = {m["name"]: m for m in store.measures(run_id=run["id"])}
    assert set(rows) == {"lambda_max", "worst_l2"}
    assert math.isfinite(rows["lambda_max"]["value"]) and rows["lambda_max"]["value"] > 0
    assert rows["lambda_max"]["details"]["n_examples"] == 128
    assert rows["worst_l2"]["details"] == {**rows["worst_l2"]["details"], "rho": 0.5, "m": 64}
    assert rows["worst_l2"]["value"] > 0

    # Bad input, in process (the same main() as the subprocess): one line, exit 2, nothing
    # measured, even when the bad id comes after a good one.
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    before = store.measures()
    (tmp_path / "out" / "checkpoints" / f"{run['id']}.pt.prev").unlink(missing_ok=True)
    for bad, why in (
        ([run["id"], "nope"], "no run 'nope'"),
        ([run["id"], "--measures", "bogus"], "unknown ['bogus']"),
        (["--all", "--workload", "nothing"], "no done runs"),
        (["--device", "tpu", run["id"]], "--device"),
    ):
        assert sharpness_main([*bad, "--results", "out"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("sharpness.py: error:") and err.count("\n") == 1 and why in err, err
    (tmp_path / "out" / "checkpoints" / f"{run['id']}.pt").unlink()
    assert sharpness_main([run["id"], "--results", "out"]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert store.measures() == before


def test_run_measure_sharpness_flag_stores_the_default_measures(tmp_path):
    out = str(tmp_path / "out")
    argv = SMOKE + ["--optimizer", "sam", "--results", out, "--measure-sharpness"]
    assert run_main(argv + ["--num_train=256"]) == 0
    store = Store(tmp_path / "out" / "runs.sqlite")
    names = {m["name"] for m in store.measures()}
    assert names == {
        "lambda_max",
        "trace",
        "worst_l2",
        "worst_linf_adaptive",
        "avg",
        "moment_1",
        "moment_2",
        "moment_3",
        "moment_4",
    }
    assert all(m["details"]["n_examples"] == 256 for m in store.measures())
