"""Domains from outside the repository (issue 19, item 6): a package found through the entry-
point group ``sam_overparam.domains`` or a ``--domains-path`` folder registers its workloads;
the registry-wide tests run on them, and run.py / sweep.py / report.py take them as they are."""

from __future__ import annotations

import sqlite3
import sys
import textwrap

import pytest

import domains.registry as registry
from domains import domain_names, get_spec, list_workloads
from tests.conftest import run_cli
from tests.domains import test_registry

# A user's domain: its own package, registering through the public API only.
PACKAGE = '''
"""An out-of-tree domain: a registered workload built with the public API."""
from domains import create_workload, register


@register("{domain}-regression", domain="{domain}", presets=("smoke", "quick"), default=True)
def regression(preset="quick", **overrides):
    """Synthetic teacher-student regression, registered from outside the repository."""
    return create_workload("synthetic-regression", preset, **overrides)
'''


def _write_package(folder, domain):
    pkg = folder / domain
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(PACKAGE.format(domain=domain))


@pytest.fixture
def clean_registry(monkeypatch):
    """The registry as it was afterwards: the external workloads and caches dropped."""
    before = dict(registry._REGISTRY)
    imported = set(registry._IMPORTED)
    # setenv first so that monkeypatch records the variable and its undo removes what
    # add_domains_path writes into os.environ (a bare delenv of an unset name records nothing)
    monkeypatch.setenv(registry.DOMAINS_PATH_ENV, "")
    monkeypatch.delenv(registry.DOMAINS_PATH_ENV)
    registry._external_domains_in.cache_clear()
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(before)
    registry._IMPORTED.clear()
    registry._IMPORTED.update(imported)
    registry._external_domains_in.cache_clear()
    for name in [m for m in sys.modules if m.startswith(("extpath", "extentry"))]:
        del sys.modules[name]


def _registry_wide_tests(name):
    test_registry.test_every_workload_smoke_two_sam_steps(name)
    test_registry.test_parameter_count_strictly_increases_with_width(name)


def test_a_domains_path_folder_registers_its_workloads(tmp_path, clean_registry):
    _write_package(tmp_path / "mine", "extpath")
    assert "extpath" not in domain_names()
    registry.add_domains_path(tmp_path / "mine")
    assert "extpath" in domain_names()
    assert list_workloads(domain="extpath") == ["extpath-regression"]
    assert get_spec("extpath-regression").domain == "extpath"
    _registry_wide_tests("extpath-regression")


def test_an_installed_entry_point_registers_its_workloads(tmp_path, monkeypatch, clean_registry):
    """An installed distribution, as pip would leave it: a dist-info with entry_points.txt."""
    site = tmp_path / "site"
    _write_package(site, "extentry")
    info = site / "extentry_domain-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: extentry-domain\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        textwrap.dedent(
            """
            [sam_overparam.domains]
            extentry = extentry
            """
        )
    )
    monkeypatch.syspath_prepend(str(site))
    registry._external_domains_in.cache_clear()
    assert "extentry" in domain_names()
    assert list_workloads(domain="extentry") == ["extentry-regression"]
    _registry_wide_tests("extentry-regression")


def test_a_domain_may_not_take_a_builtin_name(tmp_path, clean_registry):
    _write_package(tmp_path / "mine", "vision")
    registry.add_domains_path(tmp_path / "mine")
    with pytest.raises(ValueError, match="name of a built-in domain"):
        domain_names()


def test_run_sweep_and_report_take_an_outside_domain(tmp_path):
    """No edit to the repository: run.py and sweep.py's workers register it from
    --domains-path, and the report's tables include it."""
    _write_package(tmp_path / "mine", "extcli")
    folder = str(tmp_path / "mine")
    res = run_cli(
        ["--domains-path", folder, "--domain", "extcli", "--preset", "smoke", "--results", "out"],
        tmp_path,
    )
    assert res.returncode == 0, res.stderr
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "preset: smoke\nseeds: [1]\noptimizers: [base]\n"
        "entries: [{workload: extcli-regression, widths: [1x]}]\n"
    )
    args = [str(spec), "--domains-path", folder, "--results", "out", "--workers", "1"]
    res = run_cli(args, tmp_path, script="sweep.py")
    assert res.returncode == 0, res.stdout + res.stderr
    with sqlite3.connect(tmp_path / "out" / "runs.sqlite") as con:
        rows = con.execute("SELECT domain, optimizer, seed, status FROM runs").fetchall()
    assert sorted(rows) == [
        ("extcli", "sam", 0, "done"),
        ("extcli", "sgd", 0, "done"),
        ("extcli", "sgd", 1, "done"),
    ]
    res = run_cli(["--results", "out", "--sections", "tables"], tmp_path, script="report.py")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "out" / "tables" / "extcli-regression.md").exists()


def test_every_domain_has_a_test_marker(pytestconfig, tmp_path, clean_registry):
    """tests/conftest.py registers one marker per registry domain, one from outside the repo
    included (no pyproject.toml edit)."""
    from tests.conftest import pytest_configure

    markers = {line.split(":")[0] for line in pytestconfig.getini("markers")}
    assert set(domain_names()) <= markers
    _write_package(tmp_path / "mine", "extpath")
    registry.add_domains_path(tmp_path / "mine")
    lines: list[str] = []

    class Config:
        def addinivalue_line(self, name: str, line: str) -> None:
            lines.append(line)

    pytest_configure(Config())
    assert "extpath: extpath domain tests" in lines
