"""A run whose results vanish from the report says why: report.py's tables section prints a
line per group of done runs that no table shows (issue 19, item 7)."""

from __future__ import annotations

from runners.report import main as report_main
from runners.run import main


def _report(out, capsys) -> list[str]:
    capsys.readouterr()
    assert report_main(["--results", str(out), "--sections", "tables"]) == 0
    out = capsys.readouterr().out.splitlines()
    return [ln for ln in out if "not in any table" in ln or "no width table" in ln]


def test_runs_in_no_table_are_named_with_the_reason(tmp_path, capsys):
    out = tmp_path / "out"
    syn = ["--workload", "synthetic-regression", "--preset", "smoke", "--no-progress"]
    assert main([*syn, "--optimizer", "both", "--results", str(out), "--num_epochs=1"]) == 0
    assert _report(out, capsys) == []  # base and SAM of one setup: one table, nothing left out

    # the case: an ablation field off its clean value in every run of a workload
    mnist = ["--workload", "mnist-mlp", "--preset", "tiny", "--no-progress", "--num_epochs=1"]
    assert main([*mnist, "--label_noise=0.2", "--results", str(out)]) == 0
    (noisy,) = _report(out, capsys)
    assert "no width table for mnist-mlp (2 done runs" in noisy and "label_noise=0.2" in noisy
