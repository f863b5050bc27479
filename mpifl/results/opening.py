"""Opening a result file to read it (SWMR), refusing one that is shorter than it says.

A SWMR reader does not check the file's length against the end its superblock records
(a live file grows), and reading past the real end then retries forever: a truncated
copy (a partial transfer, a full disk elsewhere) would hang every reader. Unless a run
holds the file's lock, a file shorter than its recorded end is refused at once.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import h5py

from mpifl.results.lock import lock_held

SIGNATURE = b"\x89HDF\r\n\x1a\n"
EOF_OFFSET = 28  # superblock versions 2 and 3 with 8-byte offsets: the end-of-file address


def recorded_end(path: Path) -> int | None:
    """The end of file an HDF5 superblock (version 2 or 3, at offset 0) records, or None."""
    with open(path, "rb") as f:
        head = f.read(EOF_OFFSET + 8)
    if len(head) < EOF_OFFSET + 8 or head[:8] != SIGNATURE or head[8] not in (2, 3):
        return None
    return struct.unpack_from("<Q", head, EOF_OFFSET)[0] if head[9] == 8 else None


def open_result(path: str | Path) -> h5py.File:
    """The result file opened for reading (SWMR: also while its run writes it); OSError
    if it cannot be, or if no run writes it and it is shorter than its recorded end."""
    path = Path(path)
    end = recorded_end(path)
    size = os.path.getsize(path)
    if end is not None and size < end and not lock_held(path):
        raise OSError(f"truncated: {size} bytes of the {end} its header records")
    return h5py.File(path, "r", libver="latest", swmr=True)


def read_attrs(path: str | Path) -> dict[str, Any]:
    """A result file's root attributes (SWMR: works while the run is writing it); OSError
    if it cannot be read as one."""
    with open_result(path) as f:
        return dict(f.attrs)
