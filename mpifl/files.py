"""Writing files so that a crash or a full disk never leaves a half-written one in place:
write beside, then rename over; and check free space before writes that cannot be undone."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mpifl.errors import DiskFullError

SPACE_MARGIN = 4 * 2**20  # bytes kept free beyond any write's own size


def disk_full(folder: Path, need: int, what: str) -> DiskFullError:
    """The error that names the full file system, what was being written and the sizes."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = 0
    return DiskFullError(
        errno.ENOSPC,
        f"disk full: {folder} has {free / 2**20:.1f} MiB free; {what} needs "
        f"{need / 2**20:.1f} MiB free. Completed rounds are kept; free space, then resume "
        "with `mpifl run JOB --resume`",
    )


def require_space(folder: Path, nbytes: int, what: str) -> None:
    """DiskFullError unless `folder`'s file system has nbytes + SPACE_MARGIN free."""
    need = nbytes + SPACE_MARGIN
    if shutil.disk_usage(folder).free < need:
        raise disk_full(folder, need, what)


def _replace_with(path: Path, write: Callable[[Path], None], what: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC and not isinstance(exc, DiskFullError):
            raise disk_full(path.parent, SPACE_MARGIN, what) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_npz(path: Path, arrays: dict[str, np.ndarray], what: str) -> None:
    """np.savez to `path`, atomically: the old file or the whole new one, never a part."""

    def write(tmp: Path) -> None:
        with tmp.open("wb") as fh:
            np.savez(fh, **arrays)

    _replace_with(path, write, what)


def write_text(path: Path, text: str, what: str) -> None:
    """Write text to `path` atomically."""
    _replace_with(path, lambda tmp: tmp.write_text(text), what)


def copy_file(source: Path, target: Path, what: str) -> None:
    """Copy a file atomically."""
    _replace_with(target, lambda tmp: shutil.copyfile(source, tmp), what)
