"""Rank 0's HDF5 writer: tables appended and flushed every round, readable while running (SWMR).

The file stays open in SWMR mode from creation to the end of the run; the final state,
the closing attributes and, last, the status are written into it in place, each step
flushed. A reader holding the file open therefore never blocks the writer, and a kill at
any moment leaves a readable file whose status is either the old one or the final one
with everything it promises. Free space is checked before every write, since HDF5 does
not survive running out of it in the middle of one.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mpifl.errors import InputError
from mpifl.files import SPACE_MARGIN, require_space
from mpifl.results.opening import open_result
from mpifl.results.schema import (
    CLIENT_METRICS_DTYPE,
    COLUMNS,
    ENERGY_DTYPE,
    EVAL_DTYPE,
    PARTICIPATION_DTYPE,
    RANKS_DTYPE,
    ROUNDS_DTYPE,
    SERVER_DTYPE,
    STATUS_NAMES,
    client_metrics_problem,
)

TABLES = {
    "rounds": ROUNDS_DTYPE,
    "participation": PARTICIPATION_DTYPE,
    "ranks": RANKS_DTYPE,
    "eval": EVAL_DTYPE,
    "server": SERVER_DTYPE,
    "client_metrics": CLIENT_METRICS_DTYPE,
    "energy": ENERGY_DTYPE,
}
CHUNK_ROWS = 1024
DECLARED = ("metrics", "metric_units", "metric_descriptions")  # client_metrics attributes

ClientMetrics = dict[str, tuple[str, str]]  # name -> (unit, description)


def _stored_dtype(dtype: np.dtype, class_names: list[str]) -> np.dtype:
    """The on-disk dtype: `status` and `device_class` become HDF5 enums, readable by name
    in h5py (and by any HDF5 tool)."""
    enums = {
        "status": h5py.enum_dtype(STATUS_NAMES, basetype="u1"),
        "device_class": h5py.enum_dtype({n: i for i, n in enumerate(class_names)}, basetype="u1"),
    }
    return np.dtype([(n, enums.get(n, dtype[n])) for n in dtype.names])


def _describe(ds: h5py.Dataset, table: str) -> None:
    """Each column's unit and description, as the attributes `units` and `descriptions`
    (in the order of the table's columns)."""
    columns = COLUMNS[table]
    ds.attrs["columns"] = list(ds.dtype.names)
    ds.attrs["units"] = [columns[c][0] for c in ds.dtype.names]
    ds.attrs["descriptions"] = [columns[c][1] for c in ds.dtype.names]


def _declare(ds: h5py.Dataset, declared: ClientMetrics) -> None:
    """The method's per-client figures, stored with the `client_metrics` table as the
    attributes `metrics`, `metric_units` and `metric_descriptions` (in declaration
    order), so that they come back with the file, also after a resume."""
    problem = client_metrics_problem(declared)
    if problem is not None:
        raise ValueError(f"the method's client_metrics: {problem}")
    text = h5py.string_dtype()
    for key, values in zip(
        DECLARED,
        (list(declared), [u for u, _ in declared.values()], [d for _, d in declared.values()]),
        strict=True,
    ):
        ds.attrs[key] = np.array(values, dtype=text)


def declared_metrics(ds: h5py.Dataset) -> ClientMetrics:
    """What `_declare` stored with a `client_metrics` dataset."""
    if DECLARED[0] not in ds.attrs:
        return {}
    names, units, descriptions = (
        [v.decode() if isinstance(v, bytes) else str(v) for v in ds.attrs[key]] for key in DECLARED
    )
    return {n: (u, d) for n, u, d in zip(names, units, descriptions, strict=True)}


def part_line(attrs: dict[str, Any], next_round: int) -> str:
    """A line of the `parts` attribute: the rounds an earlier part of a resumed run ran
    (from 1), its ranks, host, start (UTC) and command."""
    first = int(attrs.get("resumed_at_round", 1))
    start = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(attrs["start_time"])))
    return (
        f"rounds {first}-{next_round}: {attrs['n_ranks']} ranks on {attrs['hostname']}, "
        f"started {start}: {attrs['command']}"
    )


def refuse_existing(path: Path, overwrite: bool) -> None:
    """Raise InputError if `path` exists and overwriting was not asked for."""
    if path.exists() and not overwrite:
        raise InputError(
            f"output error: {path} already exists; pass --overwrite to replace it "
            "or choose another --output (run.output)"
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
        client_metrics: ClientMetrics | None = None,
    ) -> None:
        """`client_metrics`: the method's declared per-client figures, name -> (unit,
        description), stored with the `client_metrics` table."""
        refuse_existing(path, overwrite)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        require_space(path.parent, fleet_rows.nbytes, "creating the result file")
        self.path = path
        self.seconds = 0.0
        # Built under another name and moved into place once in SWMR mode: a reader that
        # opened it before (a live monitor) would stop the writer from entering SWMR.
        building = path.with_name(path.name + ".new")
        building.unlink(missing_ok=True)
        self._file = h5py.File(building, "w-", libver="latest")
        self._file.attrs.update(attrs)
        self._file.attrs["status"] = "running"
        fleet = self._file.create_dataset(
            "fleet",
            data=fleet_rows.astype(_stored_dtype(fleet_rows.dtype, class_names)),
            chunks=True,
        )
        fleet.attrs["device_classes"] = class_names
        _describe(fleet, "fleet")
        for name, dtype in TABLES.items():
            ds = self._file.create_dataset(
                name, shape=(0,), maxshape=(None,), dtype=_stored_dtype(dtype, class_names),
                chunks=(CHUNK_ROWS,),
            )  # fmt: skip
            _describe(ds, name)
        _declare(self._file["client_metrics"], client_metrics or {})
        self._file.swmr_mode = True
        self._file.flush()
        os.replace(building, path)

    @classmethod
    def reopen(
        cls,
        path: Path,
        next_round: int,
        part: dict[str, Any],
        client_metrics: ClientMetrics | None = None,
    ) -> tuple[ResultsWriter, dict[str, np.ndarray]]:
        """Continue a run's file from a checkpoint. The file is rebuilt from what it holds
        (readable even after a SIGKILL, whose open-for-writing flag would refuse a plain
        reopen): rows of rounds after the first `next_round` are dropped, the new file
        replaces the old atomically. The resuming part's attributes `part` (ranks, host,
        command, software) replace the earlier part's, which is added as a line to the
        `parts` attribute. The declared client metrics are the file's own
        (`client_metrics` only for a file without the table). Returns the writer and the
        kept tables."""
        require_space(path.parent, path.stat().st_size, "rebuilding the result file to resume")
        with open_result(path) as old:
            attrs = dict(old.attrs)
            fleet, names = old["fleet"][:], list(old["fleet"].attrs["device_classes"])
            if "client_metrics" in old:
                client_metrics = declared_metrics(old["client_metrics"])
            kept = {}
            for name, dtype in TABLES.items():
                if name not in old:  # a table newer than the file
                    kept[name] = np.zeros(0, dtype)
                    continue
                rounds = old[name]["round"] if len(old[name]) else np.empty(0, np.int32)
                kept[name] = old[name][: int(np.searchsorted(rounds, next_round, side="right"))]
        attrs["parts"] = str(attrs.get("parts", "")) + part_line(attrs, next_round) + "\n"
        attrs.update(part, resumed_at_round=next_round + 1)
        for key in ("end_time", "next_round", "error", "wall_seconds", "status"):
            attrs.pop(key, None)
        tmp = path.with_name(path.name + ".resume")
        self = cls(tmp, True, attrs, fleet, [str(n) for n in names], client_metrics)
        for name, rows in kept.items():
            if len(rows):
                self.append(name, rows)
        os.replace(tmp, path)
        self.path, self.seconds = path, 0.0
        return self, kept

    def append(self, table: str, rows: np.ndarray) -> None:
        """Append rows to a table and flush them to disk."""
        start = time.perf_counter()
        require_space(self.path.parent, rows.nbytes + CHUNK_ROWS * rows.itemsize, f"{table} rows")
        ds = self._file[table]
        n = ds.shape[0]
        ds.resize((n + len(rows),))
        ds[n:] = rows.astype(TABLES[table], copy=False)
        ds.flush()
        self.seconds += time.perf_counter() - start

    def close(
        self, status: str, final_state: dict[str, np.ndarray] | None = None, **attrs: Any
    ) -> None:
        """Record the method's final server-side state under /final_state (complete runs),
        then the extra root attributes, then the status, and close the file."""
        f = self._file
        if final_state:
            need = sum(v.nbytes for v in final_state.values())
            require_space(self.path.parent, need, "the final state")
            group = f.require_group("final_state")
            for name, value in final_state.items():
                group.create_dataset(name, data=value)
            f.flush()
        f.attrs.update(attrs)
        f.flush()
        f.attrs["status"] = status
        f.flush()
        f.close()

    @property
    def attrs(self) -> dict[str, Any]:
        """The file's root attributes as they stand."""
        return dict(self._file.attrs)

    def fail(self, error: str, **attrs: Any) -> bool:
        """Mark the run `failed` with `error`, as far as the disk allows; never raises (the
        caller is on its way to aborting the job). Returns whether it was recorded."""
        try:
            if not self._file.id.valid:
                return False
            require_space(self.path.parent, len(error.encode()) + SPACE_MARGIN, "the error")
            self.close("failed", error=error, **attrs)
            return True
        except BaseException:  # noqa: BLE001  (any failure here must not stop the abort)
            return False
