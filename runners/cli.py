"""What the command-line scripts share: bad input is one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn

from results.store import StoreError

__all__ = ["UsageError", "Parser", "run_guarded"]


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
