"""Rank 0's HDF5 writer: tables appended and flushed every round, readable while running (SWMR)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mpifl.errors import InputError
from mpifl.results.schema import (
    EVAL_DTYPE,
    PARTICIPATION_DTYPE,
    RANKS_DTYPE,
    ROUNDS_DTYPE,
    STATUS_NAMES,
)

TABLES = {
    "rounds": ROUNDS_DTYPE,
    "participation": PARTICIPATION_DTYPE,
    "ranks": RANKS_DTYPE,
    "eval": EVAL_DTYPE,
}
CHUNK_ROWS = 1024


def _stored_dtype(dtype: np.dtype) -> np.dtype:
    """The on-disk dtype: the status column becomes an HDF5 enum, readable by name."""
    if "status" not in dtype.names:
        return dtype
    status = h5py.enum_dtype(STATUS_NAMES, basetype="u1")
    return np.dtype([(n, status if n == "status" else dtype[n]) for n in dtype.names])


def refuse_existing(path: Path, overwrite: bool) -> None:
    """Raise InputError if `path` exists and overwriting was not asked for."""
    if path.exists() and not overwrite:
        raise InputError(
            f"output error: {path} already exists; pass --overwrite to replace it "
            "or choose another run.output"
        )


class ResultsWriter:
    """Creates the result file, appends table rows, sets the final status."""

    def __init__(
        self,
        path: Path,
        overwrite: bool,
        attrs: dict[str, Any],
        fleet_rows: np.ndarray,
        class_names: list[str],
    ) -> None:
        refuse_existing(path, overwrite)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        self.path = path
        self.seconds = 0.0
        self._file = h5py.File(path, "w-", libver="latest")
        self._file.attrs.update(attrs)
        self._file.attrs["status"] = "running"
        fleet = self._file.create_dataset("fleet", data=fleet_rows, chunks=True)
        fleet.attrs["device_classes"] = class_names
        for name, dtype in TABLES.items():
            self._file.create_dataset(
                name, shape=(0,), maxshape=(None,), dtype=_stored_dtype(dtype), chunks=(CHUNK_ROWS,)
            )
        self._file.swmr_mode = True
        self._file.flush()

    def append(self, table: str, rows: np.ndarray) -> None:
        """Append rows to a table and flush them to disk."""
        start = time.perf_counter()
        ds = self._file[table]
        n = ds.shape[0]
        ds.resize((n + len(rows),))
        ds[n:] = rows.astype(TABLES[table], copy=False)
        ds.flush()
        self.seconds += time.perf_counter() - start

    def close(self, status: str, **attrs: Any) -> None:
        """Close the file and record the final status (and any extra root attributes)."""
        if self._file.id.valid:
            self._file.close()
        with h5py.File(self.path, "r+") as f:
            f.attrs["status"] = status
            f.attrs.update(attrs)
