"""A run stores its target's unit (Target.unit/scale) and the report's table reads it."""

from __future__ import annotations

import sqlite3

from domains import Target
from runners.report import main as report_main
from runners.run import main


def test_label_of_each_scale():
    assert Target("acc", "max", unit="accuracy", scale="percent").label == "accuracy, %"
    assert Target("ap", "max", unit="AP", scale="fraction").label == "AP, 0..1"
    assert Target("mse", "min", unit="MSE").label == "MSE"
    assert Target("loss", "min").label == ""


def test_the_run_stores_its_unit_and_the_table_shows_it(tmp_path):
    out = tmp_path / "out"
    args = ["--workload", "synthetic-regression", "--preset", "smoke", "--results", str(out)]
    assert main([*args, "--no-progress", "--num_epochs=1"]) == 0
    with sqlite3.connect(out / "runs.sqlite") as con:
        units = con.execute("SELECT json_extract(summary, '$.target_unit') FROM runs").fetchall()
    assert units == [("MSE",), ("MSE",)]
    with sqlite3.connect(out / "runs.sqlite") as con:  # as if it had declared another unit
        con.execute("UPDATE runs SET summary = json_set(summary, '$.target_unit', 'mse, toy')")
    assert report_main(["--results", str(out), "--sections", "tables"]) == 0
    assert "mse, toy" in (out / "tables" / "synthetic-regression.md").read_text()
