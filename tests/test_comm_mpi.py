"""The comm module's collectives on real MPI ranks."""

from __future__ import annotations

import pytest

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
