"""Runs that meet the edges of a cluster: a live reader, a full disk, stale state folders,
an overwritten run's checkpoints, requeue, two runs on one output, a failing rank while
rank 0 is busy, and SIGTERM in the middle of a long round. All on 2 real ranks."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import psutil
import pytest

from mpifl.results.status import read_status
from tests.conftest import ROOT, SMALL_JOB, env, mpiexec, mpifl, run_here, set_args
from tests.test_resume_mpi import SETS, final_state, reference, start, wait_for_rounds

__all__ = ["reference"]  # the module-scoped fixture: an uninterrupted run of SETS

pytestmark = pytest.mark.mpi

# Throttled rounds take seconds of wall time (rank 0 sleeps for its clients), which leaves
# room to act in the middle of a run; results do not depend on throttling.
SLOW = ["emulation.mode='throttled'", "emulation.time_scale=3"]  # ~0.4 s rounds


def launch(*args: str) -> subprocess.Popen:
    """`mpiexec -n 2 mpifl ARGS` in the background, in its own process group."""
    return subprocess.Popen(
        [mpiexec(), "-n", "2", sys.executable, "-m", "mpifl", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env=env(), cwd=ROOT,
    )  # fmt: skip


def ranks_of(proc: subprocess.Popen) -> list[psutil.Process]:
    return [
        p
        for p in psutil.Process(proc.pid).children(recursive=True)
        if "mpifl" in " ".join(p.cmdline())
    ]


def signal_ranks(proc: subprocess.Popen, sig: int) -> None:
    """What SLURM does at a time limit: the signal to every task."""
    for p in ranks_of(proc):
        p.send_signal(sig)


def run_id(out: Path) -> str:
    try:
        with h5py.File(out, "r", libver="latest", swmr=True) as f:
            return str(f.attrs["run_id"])
    except (OSError, KeyError):
        return ""


def rounds_of(out: Path) -> list[int]:
    with h5py.File(out, "r", libver="latest", swmr=True) as f:
        return f["rounds"]["round"][:].tolist()


def test_a_reader_holding_the_file_does_not_stop_the_end_of_a_run(reference, tmp_path):
    job, expected = reference
    out = tmp_path / "run.h5"
    proc = start(job, out)
    wait_for_rounds(out, 1, proc)
    with h5py.File(out, "r", libver="latest", swmr=True):  # held until the run has ended
        _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert final_state(out) == expected
    with h5py.File(out) as f:  # ranks.clients counts only the clients a rank trained
        part, ranks = f["participation"][:], f["ranks"][:]
    for t in range(8):
        for r in (0, 1):
            mine = np.sum((part["round"] == t + 1) & (part["rank"] == r))
            assert ranks["clients"][(ranks["round"] == t + 1) & (ranks["rank"] == r)] == mine


def test_a_failing_rank_with_a_reader_open_aborts_in_seconds(reference, tmp_path):
    job, _ = reference
    out = tmp_path / "run.h5"
    proc = start(job, out, "faults.raise_on_rank=1", "faults.raise_at_round=4")
    wait_for_rounds(out, 1, proc)
    began = time.monotonic()
    with h5py.File(out, "r", libver="latest", swmr=True):
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode != 0 and time.monotonic() - began < 30
    assert "injected fault" in stderr
    status, error = read_status(out)
    assert status == "failed" and "injected fault" in error
    assert rounds_of(out) == [1, 2, 3]


def test_a_failure_while_rank_0_is_busy_reaches_the_results(reference, tmp_path):
    job, _ = reference
    out = tmp_path / "run.h5"
    # rank 0's first client sleeps for seconds, longer than rank 1 waits for an answer
    sets = [SLOW[0], "emulation.time_scale=100", "faults.raise_on_rank=1"]
    proc = start(job, out, *sets, "faults.raise_at_round=1")
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode != 0, stderr
    status, error = read_status(out)  # rank 0 never saw it: the failure note tells
    assert status == "failed" and "rank 1" in error and "injected fault" in error


@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 MiB file system of its own (tmpfs; needs root, as CI and developers have)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)]
        ).returncode
    ):
        pytest.skip("cannot mount a tmpfs here")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(disk: Path) -> Path:
    """Fill the disk up to its last bytes."""
    filler = disk / "filler"
    with contextlib.suppress(OSError), filler.open("wb") as fh:
        while True:
            fh.write(b"\0" * 2**20)
            fh.flush()
    return filler


def test_a_full_disk_stops_the_run_cleanly_and_resume_completes_it(reference, tiny_disk):
    job, expected = reference
    out = tiny_disk / "run.h5"
    proc = start(job, out, *SLOW, "checkpoint.every=1")
    wait_for_rounds(out, 2, proc)
    filler = fill(tiny_disk)
    began = time.monotonic()
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1 and time.monotonic() - began < 20, stderr
    assert f"disk full: {tiny_disk}" in stderr, (stdout, stderr)
    done = rounds_of(out)  # the file opens and holds every completed round
    assert done == list(range(1, len(done) + 1)) and len(done) >= 2
    filler.unlink()
    resumed = mpifl("run", str(job), "--output", str(out), "--resume",
                    *set_args(*SETS, *SLOW, "checkpoint.every=1"), ranks=2)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    assert final_state(out) == expected


@pytest.mark.parametrize("method", ["fedmrl", "reft"])
def test_stale_client_state_is_never_read_back(tmp_path, method):
    job = tmp_path / "job.toml"
    job.write_text(SMALL_JOB.format(output=tmp_path / "unused.h5"))
    sets = [f"algorithm.name='{method}'", "state.cache_bytes=1000", "run.rounds=6",
            "checkpoint.every=2", "data.partition='fedmrl'"]  # fmt: skip
    run_here(job, tmp_path / "ref.h5", *sets)  # (1 rank: the runs below have 2)
    expected = final_state(tmp_path / "ref.h5")
    # kill -9 after a checkpoint, with spills written after it: resume ignores them
    out = tmp_path / "run.h5"
    cmd = ["run", str(job), "--output", str(out), *set_args(*sets)]
    proc = launch(*cmd)
    wait_for_rounds(out, 3, proc)
    assert read_status(out)[0] == "running"  # its lock is held
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 20  # (the ranks die a moment after mpiexec)
    while read_status(out)[0] == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    status, error = read_status(out)  # the file still says running; nobody holds the lock
    assert status == "killed" and "--resume" in error, (status, error)
    assert any((tmp_path / ".run.state").rglob("*.npz"))
    resumed = mpifl(*cmd, "--resume", ranks=2)
    assert resumed.returncode == 0, resumed.stderr
    assert final_state(out) == expected
    # stale and broken spill files, then --overwrite: it starts from nothing
    stale = tmp_path / ".run.state" / "rank0"
    stale.mkdir(parents=True)
    for k in range(20):
        (stale / f"client{k}.npz").write_bytes(b"")  # what a kill during np.savez left
    other = tmp_path / ".run.state" / "rank1"
    other.mkdir()
    for k in range(20):
        np.savez(other / f"client{k}.npz", weights=np.ones(3, np.float32), local=np.ones(3))
    again = mpifl(*cmd, "--overwrite", ranks=2)
    assert again.returncode == 0, again.stderr
    assert final_state(out) == expected
    assert not (tmp_path / ".run.state").exists()


def test_overwrite_forgets_old_checkpoints_and_requeue_never_dead_ends(reference, tmp_path):
    job, expected = reference
    out = tmp_path / "run.h5"
    once = ["checkpoint.every=0"]
    first = start(job, out, *once, *SLOW)
    wait_for_rounds(out, 3, first)
    signal_ranks(first, signal.SIGTERM)
    first.communicate(timeout=60)
    assert first.returncode == 3 and (tmp_path / "run.h5.ckpt" / "latest").exists()
    second = start(job, out, *once, *SLOW)  # start() passes no --overwrite: refused
    _, stderr = second.communicate(timeout=60)
    assert second.returncode == 2 and "already exists" in stderr
    old_id = run_id(out)
    third = launch("run", str(job), "--output", str(out), "--overwrite",
                   *set_args(*SETS, *once, *SLOW))  # fmt: skip
    deadline = time.monotonic() + 60
    while run_id(out) in ("", old_id):  # the new file (unreadable while it is created)
        assert third.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    wait_for_rounds(out, 1, third)
    os.killpg(third.pid, signal.SIGKILL)  # killed before its first checkpoint
    third.wait(timeout=30)
    assert not (tmp_path / "run.h5.ckpt").exists()
    resumed = mpifl("run", str(job), "--output", str(out), "--resume",
                    *set_args(*SETS, *once, *SLOW), ranks=2)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert "starting over" in resumed.stderr
    assert rounds_of(out) == list(range(1, 9))
    assert final_state(out) == expected


def test_sigterm_in_a_long_round_checkpoints_the_last_completed_round(tmp_path):
    job = tmp_path / "job.toml"
    job.write_text(SMALL_JOB.format(output=tmp_path / "unused.h5"))
    sets = ["run.rounds=3", "round.cohort=20", "emulation.time_scale=60"]  # ~8 s rounds
    ref = tmp_path / "ref.h5"
    assert mpifl("run", str(job), "--output", str(ref), *set_args(*sets), ranks=2).returncode == 0
    out = tmp_path / "run.h5"
    cmd = ["run", str(job), "--output", str(out), *set_args(*sets, SLOW[0])]
    proc = launch(*cmd)
    wait_for_rounds(out, 1, proc)
    time.sleep(0.5)  # well inside the round after the first
    signal_ranks(proc, signal.SIGTERM)
    began = time.monotonic()
    _, stderr = proc.communicate(timeout=120)
    waited = time.monotonic() - began
    assert proc.returncode == 3, stderr
    with h5py.File(out, "r", libver="latest", swmr=True) as f:
        wall = f["rounds"]["wall_time"][:]
        assert f.attrs["status"] == "interrupted"
        assert f.attrs["next_round"] - 1 == len(wall) == 1
    assert waited < 0.5 * wall[0], (waited, wall)  # it did not sit out round 1
    resumed = mpifl(*cmd, "--resume", ranks=2)
    assert resumed.returncode == 0, resumed.stderr
    assert final_state(out) == final_state(ref)


def test_a_second_run_on_the_same_output_is_refused(reference, tmp_path):
    job, _ = reference
    out = tmp_path / "run.h5"
    long_rounds = [SLOW[0], "emulation.time_scale=30"]  # ~4 s rounds: still running below
    first = start(job, out, *long_rounds)
    wait_for_rounds(out, 1, first)
    second = mpifl("run", str(job), "--output", str(out), "--overwrite",
                   *set_args(*SETS, *long_rounds), ranks=2)  # fmt: skip
    assert first.poll() is None, "the first run ended too early for this test"
    assert second.returncode == 2, second.stderr
    assert "in use by another mpifl run" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    signal_ranks(first, signal.SIGTERM)
    _, stderr = first.communicate(timeout=120)
    assert first.returncode == 3, stderr  # the first run went on, unharmed
    with h5py.File(out, "r", libver="latest", swmr=True) as f:
        assert f.attrs["status"] == "interrupted"
        assert f["rounds"]["round"][:].tolist() == list(range(1, f.attrs["next_round"]))
