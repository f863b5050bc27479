"""A tiny run of every benchmark script (`--smoke`), so that none can rot unnoticed: each
must finish and print its figures. The figures themselves are not checked (timings on a
shared machine); the scripts are for `bash launch/bench.sh`."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from bench.w5 import step_bound
from tests.conftest import ROOT, env

EXPECTED = {
    "w1": ["bare mpi4py + torch", "ratio to bare", "floor, one SGD step"],
    "w2": ["planning", "peak RSS per rank", "HDF5 file", "batteries on / off"],
    "w3": ["cache bound 1 GiB/rank", "bounded / in memory"],
    "w4": ["Allreduce fit", "prediction, 1000-client cohort"],
    "w5": ["one by one", "batched", "step bound", "arithmetic limit"],
    "breakdown": ["train.group = 1", "train.group = 256", "staging + exact commit"],
    "jobs": ["training s/round/rank", "quickstart"],
}
ARGS = {"breakdown": ["jobs/quickstart.toml"]}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_benchmark_smoke_run(name):
    cmd = [sys.executable, "-m", f"bench.{name}", *ARGS.get(name, []), "--smoke"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for text in EXPECTED[name]:
        assert text in proc.stdout, f"{name}: no '{text}' in\n{proc.stdout}"


def test_the_step_bound_counts_each_group_until_its_longest_client():
    part = pd.DataFrame({
        "round": [2, 2, 2, 2, 3],
        "group": [0, 0, 1, -1, 0],
        "status": ["trained", "trained", "trained", "dropped", "trained"],
        "samples": [4, 8, 12, 40, 5],
    })  # fmt: skip
    # 2 epochs at batch 4: steps 2, 4 | 6 | (dropped) | 4; groups step 4 + 6 + 4 times
    assert step_bound(part, epochs=2, batch_size=4) == (2 + 4 + 6 + 4) / (4 + 6 + 4)
