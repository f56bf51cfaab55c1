"""``pip install .`` for the optimizer alone: samcore needs torch and numpy only (issue 18)."""

from __future__ import annotations

import importlib
import inspect
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _requirement_name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower()


def test_install_without_extras_brings_torch_and_numpy_only():
    assert sorted(_requirement_name(r) for r in PYPROJECT["project"]["dependencies"]) == [
        "numpy",
        "torch",
    ]


def test_import_samcore_loads_nothing_beyond_torch_numpy_and_the_stdlib():
    """In a fresh interpreter: every module ``import samcore`` adds to what ``import torch,
    numpy`` loaded is samcore's own or the standard library's (so no yaml, tqdm,
    transformers, domains, runners)."""
    code = (
        "import json, sys; import torch, numpy; before = set(sys.modules); import samcore; "
        "print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    added = json.loads(out.stdout.strip().splitlines()[-1])
    assert "samcore.sam" in added  # the probe saw the import
    foreign = [
        m
        for m in added
        if m.split(".")[0] not in sys.stdlib_module_names
        and m.split(".")[0] not in ("samcore", "torch", "numpy")
    ]
    assert foreign == []


def test_public_api_is_listed_and_documented():
    import samcore

    assert len(set(samcore.__all__)) == len(samcore.__all__)
    for name in samcore.__all__:
        obj = getattr(samcore, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__doc__ and obj.__doc__.strip(), name  # its own docstring
        else:  # constants are described in the package docstring
            assert f"``{name}``" in samcore.__doc__, name


@pytest.mark.parametrize(
    ("script", "target"),
    [
        ("sam-run", "runners.run:main"),
        ("sam-sweep", "runners.sweep:main"),
        ("sam-report", "runners.report:main"),
    ],
)
def test_console_scripts_point_at_the_commands_main(script, target):
    assert PYPROJECT["project"]["scripts"][script] == target
    module_name, func_name = target.split(":")
    main = getattr(importlib.import_module(module_name), func_name)
    assert list(inspect.signature(main).parameters) == ["argv"]
    with pytest.raises(SystemExit) as exit_info:  # argparse's --help: the command is wired
        main(["--help"])
    assert exit_info.value.code == 0
