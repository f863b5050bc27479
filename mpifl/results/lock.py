"""One run per result file: rank 0 holds an exclusive lock on `.RUN.h5.lock` beside the
file (and so on its checkpoint and client-state folders) for the run's whole lifetime.

POSIX record locks (`lockf`) work on local disks and on NFS and Lustre mounted with
locking; the kernel drops the lock when the process ends, however it ends. The lock file
of a run that started stays (removing it would let two runs lock two different files);
a run refused for bad input removes the lock file it created, so that it writes nothing,
at the cost of a tiny window in which a concurrent run could lock a fresh file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from pathlib import Path

from mpifl.errors import InputError

HELD: set[Path] = set()  # lock files this process holds (never to be opened here again:
# closing any descriptor of a file drops every POSIX lock the process holds on it)


def lock_path(output: Path) -> Path:
    """The lock file of a result file."""
    return output.with_name(f".{output.name}.lock")


def lock_held(output: Path) -> bool | None:
    """Whether a live process holds the lock of a result file: True, False (a run whose
    file says `running` was then killed), or None (no lock file to ask)."""
    path = lock_path(output)
    if path.resolve() in HELD:
        return True
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


class OutputLock:
    """A held lock; `release` (or the process's end) gives it up."""

    def __init__(self, path: Path, fd: int, created: bool, folders: list[Path]) -> None:
        self.path, self._fd, self._created, self._folders = path, fd, created, folders

    @classmethod
    def acquire(cls, output: Path) -> OutputLock:
        """Lock `output` for this process; InputError if the path cannot hold a result
        file or another run holds it."""
        if output.is_dir():
            raise InputError(f"output error: {output} is a directory; run.output must be a file")
        if output.exists() and not os.access(output, os.W_OK):
            raise InputError(f"output error: {output} is not writable")
        existing = next(p for p in output.parents if p.exists())
        if not existing.is_dir():
            raise InputError(f"output error: {output}: {existing} is not a directory")
        path = lock_path(output)
        created = not path.exists()
        folders = [p for p in output.parents if not p.exists()]  # deepest first
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise InputError(
                f"output error: cannot write {output}: {exc.strerror or exc}"
            ) from None
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise InputError(
                f"output error: {output} is in use by another mpifl run ({holder}); "
                "wait for it to end or choose another --output (run.output)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        HELD.add(path.resolve())
        return cls(path, fd, created, folders)

    def release(self, remove: bool = False) -> None:
        """Give the lock up; `remove` (a run that did not start) deletes the lock file and
        the folders if this run created them, so that it leaves nothing behind."""
        HELD.discard(self.path.resolve())
        if remove and self._created:
            with contextlib.suppress(OSError):
                self.path.unlink()
            for folder in self._folders:  # only if still empty
                with contextlib.suppress(OSError):
                    folder.rmdir()
        with contextlib.suppress(OSError):
            os.close(self._fd)
