"""Lists kept by hand, checked against the registry: the README's workload table and
sweeps/quick.yaml (every workload is in the quick sweep or named there as left out)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from domains import list_workloads

REPO = Path(__file__).resolve().parents[1]
NAME = re.compile(r"`([a-z0-9]+(?:-[a-z0-9]+)+)`")  # workload names are kebab-case


def _workload_table() -> set[str]:
    readme = (REPO / "README.md").read_text()
    start = readme.index("\n## Workloads")
    section = readme[start : readme.index("\n## ", start + 1)]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    return {name for row in rows for name in NAME.findall(row.split("|")[2])}


def test_readme_workload_table_lists_exactly_the_registered_workloads():
    registered, listed = set(list_workloads()), _workload_table()
    assert not registered - listed, f"registered, not in README's table: {registered - listed}"
    assert not listed - registered, f"in README's table, not registered: {listed - registered}"


def test_quick_sweep_runs_or_names_every_registered_workload():
    text = (REPO / "sweeps" / "quick.yaml").read_text()
    entries = {e["workload"] for e in yaml.safe_load(text)["entries"]}
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    registered = set(list_workloads())
    assert entries <= registered, f"not registered: {entries - registered}"
    unexplained = {n for n in registered - entries if not re.search(rf"\b{n}\b", header)}
    assert not unexplained, f"neither in sweeps/quick.yaml nor named as left out: {unexplained}"
