"""Real SLURM: a 2-rank job through `mpifl submit`, a 3-task array through `mpifl sweep`."""

from __future__ import annotations

import mmap
import os
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

from tests.conftest import ROOT, SMALL_JOB
from tests.slurm_cluster import Cluster, ensure_installed, remove_stale_mpich_segments

pytestmark = pytest.mark.mpi


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = ensure_installed()
    if reason:
        pytest.skip(reason)
    c = Cluster(tmp_path_factory.mktemp("slurm"))
    try:
        c.start()
        yield c
    finally:
        c.stop()


def mpifl(cluster: Cluster, *args: str) -> subprocess.CompletedProcess:
    env = dict(cluster.env, PATH=f"{os.path.dirname(sys.executable)}:{cluster.env['PATH']}")
    return subprocess.run([sys.executable, "-m", "mpifl", *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=120)  # fmt: skip


def job_id(stdout: str) -> str:
    return stdout.split("submitted job ")[1].split(":")[0]


def test_submit_two_rank_job(cluster, tmp_path):
    job = tmp_path / "job.toml"
    out = tmp_path / "out.h5"
    job.write_text(SMALL_JOB.format(output=out))
    start = time.monotonic()
    proc = mpifl(cluster, "submit", str(job), "--ntasks-per-node", "2", "--time", "00:10:00",
                 "--partition", "debug")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    job.write_text(SMALL_JOB.format(output=out).replace("rounds = 3", "rounds = 7"))
    cluster.wait(job_id(proc.stdout))  # it runs the snapshot taken at submission: 3 rounds
    assert "rounds = 3" in (tmp_path / "out.job.toml").read_text()
    logs = list(tmp_path.glob("out.slurm-*.log"))
    assert logs, "no SLURM log"
    log = logs[0].read_text()
    with h5py.File(out) as f:
        assert f.attrs["status"] == "complete", log
        assert f.attrs["n_ranks"] == 2 and f.attrs["threads_per_rank"] == 1
        assert len(f["rounds"]) == 3
    print(f"SLURM 2-rank job: {time.monotonic() - start:.1f} s from submit to done")


def test_sweep_array_of_three(cluster, tmp_path):
    job = tmp_path / "job.toml"
    job.write_text(SMALL_JOB.format(output=tmp_path / "unused.h5"))
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(f'job = "{job}"\nname = "s3"\nfolder = "{tmp_path / "s3"}"\n'
                     'seeds = [0, 1, 2]\n')  # fmt: skip
    before = mpifl(cluster, "sweep", "status", str(sweep))
    assert "not submitted 3" in before.stdout
    start = time.monotonic()
    proc = mpifl(cluster, "sweep", "submit", str(sweep), "--ntasks-per-node", "2",
                 "--time", "00:10:00")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "3 tasks" in proc.stdout
    live = mpifl(cluster, "sweep", "status", str(sweep))  # squeue: queued or running by now
    states = [line.split()[2] for line in live.stdout.splitlines() if line.startswith("task")]
    assert len(states) == 3 and set(states) <= {"queued", "running", "done"}, live.stdout
    cluster.wait(job_id(proc.stdout))
    status = mpifl(cluster, "sweep", "status", str(sweep))
    assert f"submitted as job {job_id(proc.stdout)}" in status.stdout
    assert "done 3" in status.stdout, status.stdout + "".join(
        p.read_text() for p in (tmp_path / "s3").glob("*.log")
    )
    seeds = []
    for i in range(3):
        with h5py.File(tmp_path / "s3" / f"task_{i}.h5") as f:
            seeds.append(int(f.attrs["seed"]))
    assert seeds == [0, 1, 2]
    nothing = mpifl(cluster, "sweep", "submit", str(sweep), "--time", "00:10:00")
    assert nothing.returncode == 0 and "nothing submitted" in nothing.stdout, nothing.stderr
    (tmp_path / "s3" / "task_1.h5").unlink()  # resubmitting runs only what is left
    again = mpifl(cluster, "sweep", "submit", str(sweep), "--ntasks-per-node", "2",
                  "--time", "00:10:00")  # fmt: skip
    assert again.returncode == 0 and "1 tasks (2 left out: see sweep status)" in again.stdout
    assert "#SBATCH --array=1\n" in (tmp_path / "s3" / "s3.sbatch").read_text()
    cluster.wait(job_id(again.stdout))
    status = mpifl(cluster, "sweep", "status", str(sweep))
    assert "done 3" in status.stdout and f"job {job_id(again.stdout)}" in status.stdout
    assert status.stdout.count("submitted as job") == 2
    print(f"SLURM 3-task array: {time.monotonic() - start:.1f} s from submit to done")


def test_stale_mpich_segments_are_removed_and_live_ones_kept():
    """Stale segments made the first job of a new cluster hang in MPI_Init (CI, stop 29)."""
    pid = os.getpid()  # (names of this process's own: another worker may run this too)
    stale, live, new = (
        Path(f"/dev/shm/mpich_shm_{name}_{pid}") for name in ("feed", "beef", "cafe")
    )
    for p in (stale, live, new):
        p.write_bytes(b"\0" * 4096)
    os.utime(stale, (0, 0))  # left by a run killed long ago
    os.utime(live, (0, 0))
    with live.open("r+b") as f, mmap.mmap(f.fileno(), 4096):
        removed = remove_stale_mpich_segments()
        assert stale in removed and not stale.exists()
        assert live.exists() and new.exists()  # new: another run's, not attached yet
    live.unlink()
    new.unlink()
