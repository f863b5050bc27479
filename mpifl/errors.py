"""Error types that map to exit codes: user input errors exit 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class InputError(Exception):
    """Bad user input (config, data file, output path). Exit code 2."""

    exit_code = 2


MAX_SHOWN = 80  # characters of a bad value quoted in a message


def shown(value: object) -> str:
    """`repr(value)`, cut to MAX_SHOWN characters so that a message stays one short line."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 15] + f"... ({len(text)} chars)"


def describe(exc: BaseException, limit: int = 160) -> str:
    """`Type: first line of the message`, cut to `limit` characters: one line for a report."""
    text = str(exc).strip()
    first = text.splitlines()[0][:limit] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def one_of(value: object, choices: Iterable[str]) -> str:
    """ "must be one of 'a', 'b'", with "; did you mean 'x'?" for a near miss of `value`."""
    choices = list(choices)
    close = difflib.get_close_matches(str(value), choices, n=1) if isinstance(value, str) else []
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return "must be one of " + ", ".join(map(repr, choices)) + hint


class ConfigError(InputError):
    """A config key with a bad value; the message names key, value and what is allowed."""

    def __init__(self, key: str, value: object, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"config error: {shown(key)[1:-1]} = {shown(value)}: {allowed}")


class RemoteRankError(RuntimeError):
    """Another rank failed; carries its rank and traceback text."""

    def __init__(self, rank: int, traceback_text: str) -> None:
        self.rank, self.traceback_text = rank, traceback_text
        super().__init__(f"rank {rank} failed:\n{traceback_text}")


class DiskFullError(OSError):
    """Not enough space left to write results, a checkpoint or client state (exit 1: the
    run stops with its completed rounds readable and resumes once space is freed)."""


class MethodError(TypeError):
    """A method broke its contract with the engine, e.g. a client metric it does not
    declare: a programming error in the method (the run fails, exit 1)."""
