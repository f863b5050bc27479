"""A one-node SLURM cluster on localhost from Debian's packages, for the tests."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

PACKAGES = ["slurmctld", "slurmd", "slurm-client"]

CONF = """ClusterName=mpifl-test
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/none
CredType=cred/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=pmi2
SlurmdParameters=config_overrides
ReturnToService=2
SlurmctldPort={port}
SlurmdPort={port1}
FirstJobId={first_job}
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
NodeName=localhost NodeAddr=127.0.0.1 CPUs=8 RealMemory=20000
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def ensure_installed() -> str | None:
    """None if sbatch is available (installing it with apt-get as root if need be), else
    the reason it cannot be."""
    if shutil.which("sbatch") and shutil.which("slurmctld"):
        return None
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return "SLURM is not installed and apt-get (as root) is not available to install it"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    with open("/tmp/mpifl-tests-slurm-install.lock", "w") as lock:  # one pytest worker at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        if shutil.which("sbatch") and shutil.which("slurmctld"):
            return None  # another worker installed it
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *PACKAGES]):
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
            if proc.returncode != 0:
                return f"could not install SLURM: {' '.join(cmd)}: {proc.stderr.strip()[-300:]}"
    return None


def remove_stale_mpich_segments(min_age: float = 60.0) -> list[Path]:
    """Delete MPICH shared-memory files in /dev/shm that no process has mapped and that
    are older than `min_age` s (a run starting now, e.g. another pytest worker's, maps its
    segment only once its ranks attach).

    A rank killed during MPI_Init leaves its segment behind (the suite kills ranks on
    purpose). With enough of them, the first 2-rank step of a new cluster hangs in
    MPI_Init (rank 0: "Message truncated" in the UCX address allgather, rank 1 spins),
    seen with MPICH 5.0.2 and SLURM 22.05's pmi2."""
    mapped = set()
    for maps in Path("/proc").glob("[0-9]*/maps"):
        with contextlib.suppress(OSError):
            mapped.update(line.split()[-1] for line in maps.read_text().splitlines()
                          if "/dev/shm/mpich_shm_" in line)  # fmt: skip
    now = time.time()
    stale = [p for p in Path("/dev/shm").glob("mpich_shm_*")
             if str(p) not in mapped and now - _mtime(p, now) > min_age]  # fmt: skip
    for p in stale:
        with contextlib.suppress(OSError):
            p.unlink()
    return stale


def _mtime(path: Path, default: float) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # gone meanwhile
        return default


def worker() -> int:
    """This pytest-xdist worker's number (0 without xdist). Each worker's cluster has its
    own ports and job ids: two clusters' jobs with the same id hang in MPI_Init (MPICH
    names its shared memory after the PMI job and step)."""
    return int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)


class Cluster:
    """slurmctld + slurmd with a config in `folder`; `env` has SLURM_CONF set."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        for sub in ("state", "spool"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        self.conf = folder / "slurm.conf"
        n = worker()
        self.conf.write_text(CONF.format(d=folder, port=16817 + 2 * n, port1=16818 + 2 * n,
                                         first_job=1 + 100_000 * n))  # fmt: skip
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))

    def start(self, timeout: float = 60) -> None:
        remove_stale_mpich_segments()
        subprocess.run(["slurmctld", "-f", str(self.conf)], check=True, env=self.env)
        subprocess.run(
            ["slurmd", "-f", str(self.conf), "-N", "localhost"], check=True, env=self.env
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            probe = subprocess.run(["srun", "-n1", "-t", "1", "true"], env=self.env,
                                   capture_output=True, timeout=30)  # fmt: skip
            if probe.returncode == 0:
                return
            time.sleep(1)
        logs = "".join(p.read_text()[-1500:] for p in self.folder.glob("*.log"))
        raise RuntimeError(f"SLURM did not come up:\n{logs}")

    def wait(self, job_id: str, timeout: float = 300) -> None:
        """Until the job (and all its array tasks) has left the queue."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            q = subprocess.run(
                ["squeue", "-h", "-j", job_id], env=self.env, capture_output=True, text=True
            )
            if q.returncode == 0 and not q.stdout.strip():
                return
            time.sleep(1)
        raise TimeoutError(f"job {job_id} still queued after {timeout} s")

    def stop(self) -> None:
        subprocess.run(["scancel", "--user", "root"], env=self.env, capture_output=True)
        for name in ("slurmd.pid", "slurmctld.pid"):
            pid_file = self.folder / name
            if pid_file.exists():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
        time.sleep(1)
