"""Render SLURM batch scripts from launch/slurm/job.sbatch.template and submit them."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from mpifl.errors import InputError

TEMPLATE = Path(__file__).resolve().parents[2] / "launch" / "slurm" / "job.sbatch.template"
LAUNCHERS = {"srun": "srun --mpi=pmi2", "mpiexec": "mpiexec"}


@dataclass
class Resources:
    """What the allocation asks for."""

    nodes: int = 1
    ntasks_per_node: int = 2
    cpus_per_task: int = 1
    time: str = "01:00:00"
    partition: str = ""
    account: str = ""
    launcher: str = "srun"
    signal_lead: int = 60


def render(
    name: str,
    job: str,
    output: str,
    log: str,
    res: Resources,
    array: str = "",
    sets: tuple[str, ...] = (),
) -> str:
    """The batch script text. `job` and `output` may contain ${SLURM_ARRAY_TASK_ID}."""
    extra = []
    if res.partition:
        extra.append(f"#SBATCH --partition={res.partition}")
    if res.account:
        extra.append(f"#SBATCH --account={res.account}")
    if array:
        extra.append(f"#SBATCH --array={array}")
    launcher = LAUNCHERS[res.launcher]
    if res.launcher == "mpiexec":
        launcher += f" -n {res.nodes * res.ntasks_per_node}"
    return TEMPLATE.read_text().format(
        name=name,
        nodes=res.nodes,
        ntasks_per_node=res.ntasks_per_node,
        cpus_per_task=res.cpus_per_task,
        time=res.time,
        log=log,
        signal_lead=res.signal_lead,
        extra="\n".join(extra),
        venv=Path(sys.executable).parent.parent,
        workdir=Path.cwd(),
        job=job,
        output=output,
        launcher=launcher,
        sets=" ".join(f"--set {shlex.quote(s)}" for s in sets),
    )


def submit(script: Path) -> str:
    """sbatch the script; returns the job id."""
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise InputError(
            "submit error: sbatch not found; is SLURM installed here? (--dry-run renders only)"
        )
    proc = subprocess.run([sbatch, "--parsable", str(script)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise InputError(f"submit error: sbatch refused {script}: {proc.stderr.strip()}")
    return proc.stdout.strip().split(";")[0]
