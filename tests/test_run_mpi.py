"""Whole runs under mpiexec: the quick start, rank-count equality, failures, live reading."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from mpifl.results.schema import PARTICIPATION_DTYPE, Status
from tests.conftest import ROOT, env, mpiexec, mpifl

pytestmark = pytest.mark.mpi


@pytest.fixture(scope="module")
def quickstart(quickstart_run, tmp_path_factory) -> dict[int, Path]:
    """The quick-start job run with 2 ranks (mpiexec) and 1 rank (plain python)."""
    path = tmp_path_factory.mktemp("quickstart") / "q0.h5"
    proc = mpifl("run", "jobs/quickstart.toml", "--output", str(path))
    assert proc.returncode == 0, proc.stderr
    for ran, printed in ((path, proc.stdout), quickstart_run):
        assert f"results         {ran}" in printed
    return {2: quickstart_run[0], 0: path}


def test_quickstart_reaches_90_percent(quickstart):
    with h5py.File(quickstart[2]) as f:
        acc = f["rounds"]["test_accuracy"]
        assert len(acc) == 30
        assert acc.max() >= 0.90, acc
        assert acc[-1] >= 0.90, acc
        assert f.attrs["status"] == "complete" and f.attrs["n_ranks"] == 2


def test_participation_has_one_row_per_sampled_client(quickstart):
    with h5py.File(quickstart[2]) as f:
        part, rounds = f["participation"][:], f["rounds"][:]
        names = set(f["participation"].dtype.names)
    assert names == set(PARTICIPATION_DTYPE.names)
    for t in range(30):
        mine = part[part["round"] == t + 1]  # rounds are numbered from 1
        assert len(mine) == 30 == rounds["sampled"][t]
        assert len(np.unique(mine["client"])) == 30
        for s in Status:
            assert rounds[s.name.lower()][t] == np.sum(mine["status"] == s)
        assert rounds["bytes_down"][t] == mine["bytes_down"].sum()
    trained = part[part["status"] == Status.TRAINED]
    assert set(np.unique(trained["rank"])) == {0, 1}
    assert np.all(part["rank"][part["status"] != Status.TRAINED] == -1)
    assert np.all(trained["compute_time"] > 0) and np.all(trained["comm_time"] > 0)
    assert np.all(trained["bytes_up"] == trained["bytes_down"]) and np.all(trained["flops"] > 0)
    assert np.all(np.isfinite(trained["loss"]))
    # the heterogeneous fleet shows every kind of exclusion
    for s in (Status.UNAVAILABLE, Status.INFEASIBLE, Status.LATE):
        assert np.any(part["status"] == s), s
    infeasible = part[part["status"] == Status.INFEASIBLE]
    assert np.all(infeasible["footprint"] > infeasible["memory"])


def test_one_and_two_ranks_agree(quickstart):
    with h5py.File(quickstart[0]) as a, h5py.File(quickstart[2]) as b:
        ra, rb = a["rounds"][:], b["rounds"][:]
        assert a.attrs["n_ranks"] == 1
    np.testing.assert_allclose(ra["test_accuracy"], rb["test_accuracy"], atol=1e-6)
    # exact accumulation makes them bitwise equal, not only close
    for field in ("test_loss", "test_accuracy", "train_loss"):
        assert ra[field].tobytes() == rb[field].tobytes(), field


@pytest.mark.parametrize("bad_rank", [1, 0])
def test_a_failing_rank_aborts_the_job(small_job, tmp_path, bad_rank):
    out = tmp_path / "out.h5"
    start = time.monotonic()
    proc = mpifl(
        "run",
        str(small_job),
        "--set",
        f"faults.raise_on_rank={bad_rank}",
        "--set",
        "faults.raise_at_round=2",
        ranks=2,
        timeout=60,
    )
    elapsed = time.monotonic() - start
    assert proc.returncode != 0
    assert f"mpifl: rank {bad_rank} failed" in proc.stderr
    assert "RuntimeError: injected fault" in proc.stderr
    assert elapsed < 30  # start-up included; a hang would hit the timeout
    with h5py.File(out) as f:
        assert f.attrs["status"] == "failed"
        assert f.attrs["error"].startswith(f"rank {bad_rank}:")
        assert len(f["rounds"]) == 1  # round 1 completed and is kept


def test_file_is_readable_while_the_run_goes_on(small_job, tmp_path):
    out = tmp_path / "out.h5"
    cmd = [mpiexec(), "-n", "2", sys.executable, "-m", "mpifl", "run", str(small_job)]
    cmd += ["--set", "run.rounds=40"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.PIPE, text=True)
    seen = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with h5py.File(out, "r", libver="latest", swmr=True) as f:
                    n = len(f["rounds"])
                    if n >= 2 and f.attrs["status"] == "running":
                        seen = (n, f["rounds"]["round"][:n].tolist())
                        break
            except OSError:
                pass  # not created yet
            time.sleep(0.05)
    finally:
        stdout, _ = proc.communicate(timeout=120)
    assert seen is not None, "never saw a partial file"
    assert seen[1] == list(range(1, seen[0] + 1))
    assert proc.returncode == 0
    # output to a pipe is one plain line per round (what a SLURM log shows)
    lines = [line for line in stdout.splitlines() if re.match(r"\[[-+0-9 :]+\] round ", line)]
    assert len(lines) == 40 and "round   40/40" in lines[-1] and "eta 0:00:00" in lines[-1]
    first, header = stdout.splitlines()[:2]  # rank 0 says it starts, then the header
    assert first.startswith("[") and "mpifl: starting " in first and " on 2 ranks" in first
    assert header.startswith("[") and "mpifl 0." in header and "rounds 1 to 40" in header


def test_existing_output_is_kept_unless_overwrite(small_job, tmp_path):
    out = tmp_path / "out.h5"
    assert mpifl("run", str(small_job)).returncode == 0
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    proc = mpifl("run", str(small_job), ranks=2)
    assert proc.returncode == 2 and "already exists" in proc.stderr
    assert hashlib.sha256(out.read_bytes()).hexdigest() == digest
    proc = mpifl("run", str(small_job), "--overwrite", "--set", "run.seed=7")
    assert proc.returncode == 0
    with h5py.File(out) as f:
        assert f.attrs["seed"] == 7


DRIFTY = '''
import os

from mpifl.methods.fedavg import FedAvg


class Drifty(FedAvg):
    """A server step that reads something each rank has its own of (its MPI rank, as
    MPICH's launcher tells each process)."""

    def server_step(self, sums, plan):
        metrics = super().server_step(sums, plan)
        self.weights = self.weights + 1e-6 * int(os.environ.get("PMI_RANK", "0"))
        return metrics
'''


def test_ranks_whose_server_states_differ_fail_the_run_naming_the_contract(small_job, tmp_path):
    (tmp_path / "drifty.py").write_text(DRIFTY)
    out = tmp_path / "out.h5"
    proc = mpifl("run", str(small_job), "--set", "algorithm.name='drifty:Drifty'", ranks=2,
                 cwd=tmp_path, timeout=120)  # fmt: skip
    assert proc.returncode != 0
    assert "the ranks diverged in round 1" in proc.stderr and "'drifty:Drifty'" in proc.stderr
    assert "same state on every rank" in proc.stderr
    with h5py.File(out) as f:
        assert f.attrs["status"] == "failed" and len(f["rounds"]) == 0
