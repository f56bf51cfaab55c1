"""What the command-line scripts share: bad input is one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
from typing import NoReturn

__all__ = ["UsageError", "Parser"]


class UsageError(Exception):
    """Bad command-line input: reported as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    """argparse that raises ``UsageError`` instead of printing usage and exiting, so each
    script reports every kind of bad input the same way."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)
