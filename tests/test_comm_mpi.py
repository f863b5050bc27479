"""The comm module: its collectives on real MPI ranks, and how it aborts a job."""

from __future__ import annotations

import sys

import pytest

from mpifl import comm as comm_module
from mpifl.comm import ABORT_GRACE_S, MPIComm
from tests.conftest import mpi_script

SNIPPET = """
import sys
from pathlib import Path

import numpy as np
import mpifl.comm as comm_module
from mpifl.comm import world

comm_module.MAX_COUNT = 3  # force the chunked path of allreduce
c = world()
n = c.size
buf = np.full(10, c.rank + 1, dtype=np.int64)
assert c.allreduce_sum(buf) is buf
assert np.all(buf == n * (n + 1) // 2), buf

rows = np.zeros(c.rank + 1, dtype=[("a", "i4"), ("b", "f8")])
rows["a"], rows["b"] = c.rank, 0.5 * c.rank
got = c.gather_rows(rows)
if c.rank == 0:
    assert got["a"].tolist() == [r for r in range(n) for _ in range(r + 1)], got
    assert got["b"].tolist() == [0.5 * r for r in range(n) for _ in range(r + 1)]
else:
    assert got is None

assert c.bcast_object({"x": 1} if c.rank == 0 else None) == {"x": 1}
assert c.first_error("bad on last" if c.rank == n - 1 else None) == "bad on last"
assert c.first_error(None) is None
c.barrier()
Path(sys.argv[1], f"rank{c.rank}").write_text(f"ok {c.seconds > 0}")
"""


@pytest.mark.mpi
@pytest.mark.parametrize("ranks", [2, 4])
def test_collectives(tmp_path, ranks):
    proc = mpi_script(SNIPPET, ranks, tmp_path)
    assert proc.returncode == 0, proc.stderr
    for r in range(ranks):  # one file per rank: stdout of several ranks may interleave
        assert (tmp_path / f"rank{r}").read_text() == "ok True"


class _Recorded:
    """Stands in for the MPI communicator and the output streams; logs what is done."""

    def __init__(self, events: list[tuple]) -> None:
        self.events = events

    def Get_rank(self) -> int:  # noqa: N802  (mpi4py's names)
        return 0

    def Get_size(self) -> int:  # noqa: N802
        return 2

    def Abort(self, code: int) -> None:  # noqa: N802
        self.events.append(("abort", code))

    def flush(self) -> None:
        self.events.append(("flush",))


def test_abort_waits_for_the_launcher_to_pass_on_the_error_line(monkeypatch):
    # MPI_Abort right after the error line lost that line in ~1 abort in 15 (mpiexec
    # killed the ranks before passing on their last output): flush, wait, then abort
    events: list[tuple] = []
    recorded = _Recorded(events)
    monkeypatch.setattr(sys, "stdout", recorded)
    monkeypatch.setattr(sys, "stderr", recorded)
    monkeypatch.setattr(comm_module.time, "sleep", lambda s: events.append(("sleep", s)))
    with pytest.raises(SystemExit):
        MPIComm(recorded, None).abort(1)
    assert events == [("flush",), ("flush",), ("sleep", ABORT_GRACE_S), ("abort", 1)]
    assert ABORT_GRACE_S >= 0.1  # 0.1 s lost no line in 70 aborts, 2 of them under load
