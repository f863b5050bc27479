"""What happens when a rank fails: report it, mark the results `failed`, abort every rank.

Whatever raises on the way (a full disk, a reader-locked file, a dead peer), the job is
aborted: a failure must never turn into a hang that lasts until the wall-time limit.
"""

from __future__ import annotations

import contextlib
import sys
import traceback
from pathlib import Path
from typing import NoReturn

from mpifl.comm import Comm
from mpifl.errors import RemoteRankError, describe
from mpifl.results.recorder import Recorder
from mpifl.results.status import write_failure_note


def abort_job(
    comm: Comm, exc: BaseException, recorder: Recorder | None, output: Path | None
) -> NoReturn:
    """Called in an `except` block on the rank that saw `exc`; never returns.

    The failing rank prints its error and traceback and leaves a failure note beside the
    results (see `mpifl.results.status`); another rank tells rank 0 and waits briefly for
    it to record the failure in the file; rank 0 records it; then the job is aborted."""
    try:
        if isinstance(exc, RemoteRankError):
            rank, text = exc.rank, exc.traceback_text
        else:
            rank, text = comm.rank, traceback.format_exc()
            print(f"mpifl: rank {rank} failed: {describe(exc, 300)}\n{text}", file=sys.stderr,
                  flush=True)  # fmt: skip
            if output is not None:
                with contextlib.suppress(Exception):
                    write_failure_note(output, rank, text)
        if comm.rank != 0:
            comm.report_failure(text)
        elif recorder is not None and recorder.fail(f"rank {rank}:\n{text}"):
            print(f"mpifl: results marked failed: {recorder.path}", file=sys.stderr, flush=True)
        if rank != comm.rank:
            comm.acknowledge_failure(rank)
    finally:
        comm.abort(1)
