"""What happens when a rank fails: report it, mark the results `failed`, abort every rank."""

from __future__ import annotations

import sys
import time
import traceback
from typing import NoReturn

from mpifl.comm import Comm
from mpifl.errors import RemoteRankError
from mpifl.results.writer import ResultsWriter


def abort_job(comm: Comm, exc: BaseException, writer: ResultsWriter | None) -> NoReturn:
    """Called in an `except` block on the rank that saw `exc`; never returns."""
    if isinstance(exc, RemoteRankError):
        rank, text = exc.rank, exc.traceback_text
    else:
        rank, text = comm.rank, traceback.format_exc()
        print(f"mpifl: rank {rank} failed:\n{text}", file=sys.stderr, flush=True)
    if comm.rank != 0:
        comm.fail(text)
    if writer is not None:
        writer.close("failed", error=f"rank {rank}:\n{text}", end_time=time.time())
        print(f"mpifl: results marked failed: {writer.path}", file=sys.stderr, flush=True)
    if rank != comm.rank:
        comm.acknowledge_failure(rank)
    comm.abort(1)
