"""HDF5 results: schema, writer (rank 0), reader (pandas)."""

from mpifl.results.reader import Run, read_run, read_runs

__all__ = ["Run", "read_run", "read_runs"]
