"""A successful graph run prints no library warnings (issue 20, rough edges): PyG's import-time
``torch.jit.script`` FutureWarning is silenced where the suite imports PyG
(domains/graph/common.require_graph_extra). The ogbg workload's check is in
test_graph_ogbg.test_cli_smoke_runs_base_and_sam."""

from __future__ import annotations

import sqlite3

import pytest

pytestmark = pytest.mark.graph


def test_planetoid_smoke_run_has_a_quiet_stderr(cli, tmp_path):
    proc = cli(
        ["--workload", "planetoid-cora", "--preset", "smoke", "--optimizer", "base"]
        + ["--results", str(tmp_path / "res"), "--no-progress"]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with sqlite3.connect(tmp_path / "res" / "runs.sqlite") as db:
        assert db.execute("SELECT status FROM runs").fetchall() == [("done",)]
    assert "Warning" not in proc.stderr and "deprecated" not in proc.stderr, proc.stderr
