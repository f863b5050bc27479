"""HDF5 results: schema, recorder and writer (rank 0), reader (pandas).

`read_run`, `read_runs` and `Run` are imported on first use (pandas is not needed by
a run or by `mpifl --help`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mpifl.results.reader import Run, read_run, read_runs

__all__ = ["Run", "read_run", "read_runs"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from mpifl.results import reader

        return getattr(reader, name)
    raise AttributeError(f"module 'mpifl.results' has no attribute {name!r}")
