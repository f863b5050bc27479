"""The only module that touches MPI: buffer collectives, record gathering, failure handling.

`Comm` is the communicator of one process, without MPI (in-process tests, tools);
`MPIComm` is the job's. Every MPI collective is started non-blocking and completed by
polling, so that rank 0 can notice a failure notice from another rank while it waits,
mark the results `failed`, and abort the job, instead of hanging in a collective that
will never complete.
"""

from __future__ import annotations

import contextlib
import pickle
import sys
import time
from typing import Any, NoReturn

import numpy as np

from mpifl.errors import RemoteRankError

FAIL_TAG = 7301
ACK_TAG = 7302
ACK_WAIT_S = 3.0
ABORT_GRACE_S = 0.5  # before MPI_Abort: time for the launcher to pass on the last output
MAX_COUNT = 2**30  # elements per MPI call, under the 2^31 count limit
_MAX_SLEEP = 2e-4  # polling granularity: bounds the added latency per collective


class Comm:
    """A communicator of one process (rank 0 of 1), without MPI: every collective is the
    identity. `seconds` accumulates time spent in collectives."""

    def __init__(self) -> None:
        self.rank, self.size = 0, 1
        self.seconds = 0.0

    def allreduce_sum(self, buf: np.ndarray) -> np.ndarray:
        """Sum a contiguous numpy buffer over all ranks, in place; returns it."""
        return buf

    def gather_rows(self, rows: np.ndarray) -> np.ndarray | None:
        """Structured rows of every rank, on rank 0 (rank order); None on other ranks."""
        return rows

    def bcast_object(self, obj: Any, root: int = 0) -> Any:
        """Broadcast a small picklable object from `root` (set-up only, never per client)."""
        return obj

    def any_flag(self, flag: bool) -> bool:
        """True on every rank if `flag` is true on any rank."""
        return bool(self.allreduce_sum(np.array([int(flag)], dtype=np.int64))[0])

    def first_error(self, message: str | None) -> str | None:
        """Agree on errors: every rank gets the lowest failing rank's message, or None."""
        return message

    def barrier(self) -> None:
        """Wait for every rank."""

    def poll_failures(self) -> None:
        """On rank 0: raise RemoteRankError if another rank has sent a failure notice."""

    def acknowledge_failure(self, rank: int) -> None:
        """Rank 0 tells a failed rank that its failure was recorded."""

    def report_failure(self, traceback_text: str) -> None:
        """Tell rank 0 of this rank's failure and wait until it has recorded it."""

    def library(self) -> dict[str, str]:
        """Versions of mpi4py and of the MPI library under it."""
        return {"mpi4py_version": "", "mpi_library": "none (one process, no MPI)"}

    def abort(self, code: int) -> NoReturn:
        """End the job with exit code `code`."""
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        raise SystemExit(code)


class MPIComm(Comm):
    """A communicator over all ranks of an MPI job."""

    def __init__(self, mpi_comm: Any, mpi: Any) -> None:
        super().__init__()
        self._comm, self._mpi = mpi_comm, mpi
        self.rank = mpi_comm.Get_rank()
        self.size = mpi_comm.Get_size()

    def _wait(self, request: Any) -> None:
        start = time.perf_counter()
        pause = 0.0
        while not request.Test():
            self.poll_failures()
            time.sleep(pause)
            pause = min(max(pause * 2, 1e-5), _MAX_SLEEP)
        self.seconds += time.perf_counter() - start

    def allreduce_sum(self, buf: np.ndarray) -> np.ndarray:
        """Sum a contiguous 1-D numpy buffer over all ranks, in place; returns it."""
        if self.size == 1:
            return buf
        flat = buf.reshape(-1)
        for lo in range(0, max(flat.size, 1), MAX_COUNT):
            part = flat[lo : lo + MAX_COUNT]
            self._wait(self._comm.Iallreduce(self._mpi.IN_PLACE, part, op=self._mpi.SUM))
        return buf

    def gather_rows(self, rows: np.ndarray) -> np.ndarray | None:
        """Gatherv fixed-dtype structured rows to rank 0 (rank order); None on other ranks."""
        counts = np.zeros(self.size, dtype=np.int64)
        mine = np.array([rows.nbytes], dtype=np.int64)
        self._wait(self._comm.Iallgather(mine, counts))
        if counts.sum() >= 2**31:
            raise ValueError(f"gather of {counts.sum()} bytes exceeds the MPI count limit")
        send = np.ascontiguousarray(rows).view(np.uint8)
        if self.rank != 0:
            self._wait(self._comm.Igatherv(send, None, root=0))
            return None
        out = np.empty(int(counts.sum()), dtype=np.uint8)
        displs = np.concatenate([[0], np.cumsum(counts)[:-1]])
        recv = [out, counts.astype(np.int32), displs.astype(np.int32), self._mpi.BYTE]
        self._wait(self._comm.Igatherv(send, recv, root=0))
        return out.view(rows.dtype)

    def bcast_object(self, obj: Any, root: int = 0) -> Any:
        """Broadcast a small picklable object from `root` (set-up only, never per client)."""
        if self.size == 1:
            return obj
        mine = self.rank == root
        payload = np.frombuffer(pickle.dumps(obj), dtype=np.uint8) if mine else None
        length = np.array([payload.size if mine else 0], dtype=np.int64)
        self._wait(self._comm.Ibcast(length, root=root))
        buf = payload.copy() if mine else np.empty(int(length[0]), dtype=np.uint8)
        self._wait(self._comm.Ibcast(buf, root=root))
        return pickle.loads(buf.tobytes())

    def first_error(self, message: str | None) -> str | None:
        """Agree on errors: every rank gets the lowest failing rank's message, or None."""
        flags = np.zeros(self.size, dtype=np.int64)
        flags[self.rank] = message is not None
        failed = np.flatnonzero(self.allreduce_sum(flags))
        if len(failed) == 0:
            return None
        return self.bcast_object(message, root=int(failed[0]))

    def barrier(self) -> None:
        """Wait for every rank."""
        if self.size > 1:
            self._wait(self._comm.Ibarrier())

    def poll_failures(self) -> None:
        """On rank 0: raise RemoteRankError if another rank has sent a failure notice."""
        if self.rank != 0 or self.size == 1:
            return
        status = self._mpi.Status()
        if self._comm.Iprobe(source=self._mpi.ANY_SOURCE, tag=FAIL_TAG, status=status):
            buf = bytearray(status.Get_count(self._mpi.BYTE))
            self._comm.Recv([buf, self._mpi.BYTE], source=status.Get_source(), tag=FAIL_TAG)
            raise RemoteRankError(status.Get_source(), buf.decode(errors="replace"))

    def acknowledge_failure(self, rank: int) -> None:
        """Rank 0 tells a failed rank that its failure was recorded."""
        self._comm.Isend([bytearray(1), self._mpi.BYTE], dest=rank, tag=ACK_TAG)

    def report_failure(self, traceback_text: str) -> None:
        """Tell rank 0 of this rank's failure and wait (at most ACK_WAIT_S) until it has
        recorded it; the caller then aborts."""
        if self.rank != 0 and self.size > 1:
            payload = traceback_text.encode()
            self._comm.Isend([payload, self._mpi.BYTE], dest=0, tag=FAIL_TAG)
            ack = self._comm.Irecv([bytearray(1), self._mpi.BYTE], source=0, tag=ACK_TAG)
            deadline = time.monotonic() + ACK_WAIT_S
            while time.monotonic() < deadline and not ack.Test():
                time.sleep(0.01)

    def library(self) -> dict[str, str]:
        """Versions of mpi4py and of the MPI library under it (first line)."""
        import mpi4py

        line = " ".join(self._mpi.Get_library_version().strip().splitlines()[0].split())
        return {"mpi4py_version": mpi4py.__version__, "mpi_library": line}

    def abort(self, code: int) -> NoReturn:
        """Abort every rank of the job, ABORT_GRACE_S after flushing this rank's output:
        MPI_Abort has the launcher kill every rank, and mpiexec (hydra) dropped the output
        a rank had written just before, the error line with it, in ~1 abort in 15."""
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        time.sleep(ABORT_GRACE_S)
        self._comm.Abort(code)
        raise SystemExit(code)  # not reached: Abort does not return


def world() -> MPIComm:
    """The world communicator; initialises MPI (a plain `python` run is a 1-rank world)."""
    from mpi4py import MPI

    return MPIComm(MPI.COMM_WORLD, MPI)
