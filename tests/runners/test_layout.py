"""Commands apart from the engine: each command module is a thin ``main(argv)`` and imports
no other command (shared code lives in the engine modules)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

RUNNERS = Path(__file__).resolve().parents[2] / "runners"
COMMANDS = ("run", "sweep", "report", "sharpness", "theory")


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


@pytest.mark.parametrize("command", COMMANDS)
def test_a_command_imports_no_other_command_and_has_main(command):
    path = RUNNERS / f"{command}.py"
    imported = _imported_modules(path)
    others = {f"runners.{c}" for c in COMMANDS if c != command}
    assert not imported & others, f"{command}.py imports {sorted(imported & others)}"
    tree = ast.parse(path.read_text())
    mains = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main"]
    assert mains and [a.arg for a in mains[0].args.args] == ["argv"]


def test_runners_holds_only_the_commands_and_the_engine_package():
    # Engine modules live in runners/engine/, so a new library module cannot land beside the
    # commands unnoticed.
    entries = {p.name for p in RUNNERS.iterdir() if p.name != "__pycache__"}
    assert entries == {"__init__.py", "engine", *(f"{c}.py" for c in COMMANDS)}
