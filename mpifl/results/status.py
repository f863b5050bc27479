"""A run's status as a reader should see it: the file's `status` attribute, unless a rank
left a failure note beside it that rank 0 could not record, or the run died without a
word (no process holds its lock: `killed`).

A rank that fails writes `RUN.h5.failed` (rank and traceback) before the job is aborted.
Rank 0 also records the failure in the file when it can; when it cannot (it was busy in
a long round, or the disk is full), the note is what tells `read_run`, `mpifl report`
and `mpifl sweep status` that the run failed. A new run or a resume of the file removes
the note.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from mpifl.files import write_text
from mpifl.results.lock import lock_held
from mpifl.results.opening import open_result


def note_path(output: Path) -> Path:
    """The failure note of a result file."""
    return output.with_name(output.name + ".failed")


def write_failure_note(output: Path, rank: int, text: str) -> None:
    """Leave the failure of `rank` beside the result file (atomically)."""
    write_text(note_path(output), f"rank {rank}:\n{text}", "the failure note")


def remove_failure_note(output: Path) -> None:
    """Forget an earlier failure (a new run or a resume of the file)."""
    with contextlib.suppress(FileNotFoundError):
        note_path(output).unlink()


KILLED = (
    "no process holds the run's lock: it was killed (SIGKILL, out of memory, a lost node) "
    "before it could record its end; --resume continues from its last checkpoint"
)


def effective(output: Path, status: str, error: str | None) -> tuple[str, str | None]:
    """(status, error) after taking the failure note and the run's lock into account: a
    file that says `running` is `failed` if a rank left a note, `killed` if no process
    holds its lock any more."""
    if status != "running":
        return status, error
    note = note_path(output)
    if note.is_file():
        with contextlib.suppress(OSError):
            return "failed", note.read_text(errors="replace")
    if lock_held(output) is False:
        return "killed", KILLED
    return status, error


def read_status(output: Path) -> tuple[str, str | None]:
    """(status, error) of a result file; OSError if it cannot be read."""
    with open_result(output) as f:
        status = str(f.attrs.get("status", "running"))
        error = f.attrs.get("error")
    return effective(output, status, None if error is None else str(error))
