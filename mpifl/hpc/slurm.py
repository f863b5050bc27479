"""Render SLURM batch scripts from launch/slurm/job.sbatch.template and submit them."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from mpifl.errors import InputError, shown

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


ARRAY_TASK = "${SLURM_ARRAY_TASK_ID}"
_SBATCH_VALUE = re.compile(r"[!#%+,\-./0-9:=?@A-Z\[\]^_a-z~]+")  # printable ASCII, no shell
_TIME = re.compile(r"([0-9]+-)?[0-9]+(:[0-9]{1,2}){0,2}")


def shell_word(value: str) -> str:
    """`value` as one shell word, quoted, with ${SLURM_ARRAY_TASK_ID} left to expand."""
    return f'"{ARRAY_TASK}"'.join(shlex.quote(p) for p in value.split(ARRAY_TASK))


def sbatch_value(option: str, value: str) -> str:
    """`value` if it is safe on an #SBATCH line (sbatch reads those itself, not a shell);
    InputError naming the option otherwise."""
    if not _SBATCH_VALUE.fullmatch(value.replace(ARRAY_TASK, "%a")):
        raise InputError(
            f"submit error: {option} = {shown(value)}: must be non-empty, without spaces, "
            "quotes, control characters or shell metacharacters"
        )
    return value


def job_name(name: str) -> str:
    """A SLURM job name from a run or sweep name: unsafe characters become '_'."""
    return re.sub(r"[^A-Za-z0-9._+-]", "_", name)[:64] or "mpifl"


def check_time(value: str) -> str:
    """A SLURM time limit (minutes, MM:SS, HH:MM:SS, D-HH[:MM[:SS]]); InputError otherwise."""
    if not _TIME.fullmatch(value):
        raise InputError(
            f"submit error: --time {shown(value)}: use minutes, HH:MM:SS or D-HH:MM:SS"
        )
    return value


def render(
    name: str,
    job: str,
    output: str,
    log: str,
    res: Resources,
    array: str = "",
    sets: tuple[str, ...] = (),
) -> str:
    """The batch script text. `job` and `output` contain ${SLURM_ARRAY_TASK_ID} exactly
    when `array` is given (a job array's task files); nowhere else may they hold '$'."""
    for what, value in (("the job path", job), ("run.output", output)):
        if "$" in (value.replace(ARRAY_TASK, "") if array else value):
            raise InputError(f"submit error: {what} = {shown(value)}: must not contain '$'")
    extra = []
    if res.partition:
        extra.append(f"#SBATCH --partition={sbatch_value('--partition', res.partition)}")
    if res.account:
        extra.append(f"#SBATCH --account={sbatch_value('--account', res.account)}")
    if array:
        extra.append(f"#SBATCH --array={array}")
    launcher = LAUNCHERS[res.launcher]
    if res.launcher == "mpiexec":
        launcher += f" -n {res.nodes * res.ntasks_per_node}"
    for option, count in (("--nodes", res.nodes), ("--ntasks-per-node", res.ntasks_per_node),
                          ("--cpus-per-task", res.cpus_per_task)):  # fmt: skip
        if count < 1:
            raise InputError(f"submit error: {option} {count}: must be >= 1")
    return TEMPLATE.read_text().format(
        name=job_name(name),
        nodes=res.nodes,
        ntasks_per_node=res.ntasks_per_node,
        cpus_per_task=res.cpus_per_task,
        time=check_time(res.time),
        log=sbatch_value("the log path (from run.output)", log),
        signal_lead=res.signal_lead,
        extra="\n".join(extra),
        venv_bin=shell_word(str(Path(sys.executable).parent)),
        workdir=shell_word(str(Path.cwd())),
        job=shell_word(job),
        output=shell_word(output),
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
