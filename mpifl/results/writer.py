"""Rank 0's HDF5 writer: tables appended and flushed every round, readable while running (SWMR)."""

from __future__ import annotations

import os
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

    @classmethod
    def reopen(cls, path: Path, next_round: int) -> tuple[ResultsWriter, dict[str, np.ndarray]]:
        """Continue a run's file from a checkpoint. The file is rebuilt from what it holds
        (readable even after a SIGKILL, whose open-for-writing flag would refuse a plain
        reopen): rows of rounds >= next_round are dropped, the new file replaces the old
        atomically. Returns the writer and the kept tables."""
        with h5py.File(path, "r", libver="latest", swmr=True) as old:
            attrs = dict(old.attrs)
            fleet, names = old["fleet"][:], list(old["fleet"].attrs["device_classes"])
            kept = {}
            for name in TABLES:
                rounds = old[name]["round"] if len(old[name]) else np.empty(0, np.int32)
                kept[name] = old[name][: int(np.searchsorted(rounds, next_round))]
        attrs["resumed_at_round"] = next_round
        for key in ("end_time", "next_round", "error", "wall_seconds"):
            attrs.pop(key, None)
        tmp = path.with_name(path.name + ".resume")
        self = cls(tmp, True, attrs, fleet, [str(n) for n in names])
        for name, rows in kept.items():
            if len(rows):
                self.append(name, rows)
        os.replace(tmp, path)
        self.path, self.seconds = path, 0.0
        return self, kept

    def append(self, table: str, rows: np.ndarray) -> None:
        """Append rows to a table and flush them to disk."""
        start = time.perf_counter()
        ds = self._file[table]
        n = ds.shape[0]
        ds.resize((n + len(rows),))
        ds[n:] = rows.astype(TABLES[table], copy=False)
        ds.flush()
        self.seconds += time.perf_counter() - start

    def close(
        self, status: str, final_state: dict[str, np.ndarray] | None = None, **attrs: Any
    ) -> None:
        """Close the file and record the final status, extra root attributes, and (complete
        runs) the method's final server-side state under /final_state."""
        if self._file.id.valid:
            self._file.close()
        with h5py.File(self.path, "r+") as f:
            f.attrs["status"] = status
            f.attrs.update(attrs)
            if final_state is not None:
                group = f.require_group("final_state")
                for name, value in final_state.items():
                    group.create_dataset(name, data=value)
