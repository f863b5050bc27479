"""Argument types for command lines (mpifl's scripts under analysis/ and bench/): argparse
refuses a value they reject with the usage and one line naming it, exit 2, before anything
runs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn


def exit_with(message: str, code: int = 2) -> NoReturn:
    """`message` as one line on stderr, then exit `code` (2: bad input found past
    argparse, nothing run or written)."""
    print(message, file=sys.stderr)
    sys.exit(code)


def refuse_any(problems: dict[str, bool], prefix: str) -> None:
    """Refuse the first problem that holds (problem -> whether it does), if any."""
    for problem, holds in problems.items():
        if holds:
            exit_with(f"{prefix}: {problem}")


def at_least(low: int) -> Callable[[str], int]:
    """An integer no smaller than `low`."""

    def parse(text: str) -> int:
        value = int(text)  # (a ValueError: argparse says "invalid <name> value")
        if value < low:
            raise argparse.ArgumentTypeError(f"{value}: at least {low}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def output_folder(text: str) -> Path:
    """A folder to write into: one that exists, or can be made (no part of it is a file)."""
    path = Path(text)
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                raise argparse.ArgumentTypeError(f"{text}: {part} is a file, not a folder")
            break
    return path


def existing_file(text: str) -> Path:
    """A file that is there."""
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    return path


def existing_folder(text: str) -> Path:
    """A folder that is there."""
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: no such folder")
    return path
