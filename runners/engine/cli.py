"""What the command-line scripts share: bad input is one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from domains import add_domains_path
from results.io import DEFAULT_RESULTS  # defined torch-free for report.py; re-exported
from results.store import StoreError
from runners.engine.config import run_options

__all__ = [
    "DEFAULT_RESULTS",
    "UsageError",
    "Parser",
    "run_guarded",
    "add_run_options",
    "run_option_values",
    "add_domains_path_option",
    "add_no_memory_check_option",
    "results_folder",
    "register_domains_path",
]


class UsageError(Exception):
    """Bad command-line input: reported as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    """argparse that raises ``UsageError`` instead of printing usage and exiting, so each
    script reports every kind of bad input the same way."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def run_guarded(prog: str, main: Callable[[], int]) -> int:
    """``main()``, with the two faults that end a whole invocation said in one line: Ctrl-C
    (the loop has stored its run ``interrupted``; exit 130, as a shell does) and a store that
    can no longer be written, e.g. a full disk (exit 2). Rerunning resumes either way."""
    try:
        return main()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; rerun to resume", file=sys.stderr)
        return 130
    except StoreError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2


def results_folder(text: str) -> Path:
    """``--results`` as a folder; an empty value is refused (``Path("")`` would be the current
    directory, and the store would land wherever the command happened to run)."""
    if not text.strip():
        raise UsageError("--results must name a folder, got an empty value")
    return Path(text)


def add_no_memory_check_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-memory-check",
        action="store_true",
        help="run even when the estimated memory (parameters x 4 copies + data) exceeds "
        "this machine's memory",
    )


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """One flag per RunConfig run-level option (``runners.engine.config.option``): a bool is a switch,
    a grid option a comma list, the rest typed by the default, with the declared choices."""
    for f in run_options():
        meta = f.metadata["run_option"]
        if isinstance(f.default, bool):
            parser.add_argument(_flag(f.name), action="store_true", help=meta["help"])
        elif meta["grid"]:
            parser.add_argument(_flag(f.name), default=f"{f.default:g}", help=meta["help"])
        else:
            parser.add_argument(
                _flag(f.name),
                type=type(f.default),
                default=f.default,
                choices=meta["choices"],
                help=meta["help"],
            )


def run_option_values(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed run-level options by field name; a grid option's comma list as a list."""
    values: dict[str, Any] = {}
    for f in run_options():
        value = getattr(args, f.name)
        if f.metadata["run_option"]["grid"] and isinstance(value, str):
            kind = type(f.default)
            try:
                value = [kind(v) for v in value.split(",")]
            except ValueError:
                raise UsageError(
                    f"{_flag(f.name)} must be a {kind.__name__} or comma list of them, "
                    f"got {value!r}"
                ) from None
        values[f.name] = value
    return values


def add_domains_path_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--domains-path",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder of domain packages from outside the repository: each package in it "
        "registers its workloads (also $SAM_DOMAINS_PATH; installed packages register through "
        "the entry-point group sam_overparam.domains)",
    )


def register_domains_path(argv: list[str] | None) -> None:
    """Apply ``--domains-path DIR`` before the parser is built (its help lists the domains)
    and before anything looks a workload up; the processes a command starts inherit it."""
    argv = sys.argv[1:] if argv is None else argv
    for i, token in enumerate(argv):
        if token == "--domains-path" and i + 1 < len(argv):
            folder = argv[i + 1]
        elif token.startswith("--domains-path="):
            folder = token.partition("=")[2]
        else:
            continue
        try:
            add_domains_path(folder)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
