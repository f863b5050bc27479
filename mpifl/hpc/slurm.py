"""Render SLURM batch scripts from a template (launch/slurm/job.sbatch.template, or a
site's own: --template PATH or $MPIFL_SLURM_TEMPLATE) and submit them."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mpifl.errors import InputError, describe, shown

TEMPLATE = Path(__file__).resolve().parents[2] / "launch" / "slurm" / "job.sbatch.template"
TEMPLATE_ENV = "MPIFL_SLURM_TEMPLATE"
LAUNCHERS = ("srun", "mpiexec")
OPTIONAL = ("partition", "account", "mem", "mem_per_cpu", "gres", "qos", "constraint",
            "mail_type", "mail_user")  # fmt: skip
MANAGED = {"job-name": "from the run's name", "nodes": "from --nodes",
           "ntasks-per-node": "from --ntasks-per-node", "cpus-per-task": "from --cpus-per-task",
           "time": "from --time", "output": "from run.output", "signal": "from --signal",
           "requeue": "always, so that a preempted job is requeued and resumes",
           "no-requeue": "--requeue always, so that a preempted job is requeued and resumes",
           "array": "for the sweep"}  # fmt: skip


@dataclass
class Resources:
    """What the allocation asks for: counts, limits, the optional #SBATCH options (empty:
    left out), any other `sbatch_options` ("option=value"), and the site template."""

    nodes: int = 1
    ntasks_per_node: int = 2
    cpus_per_task: int = 1
    time: str = "01:00:00"
    partition: str = ""
    account: str = ""
    launcher: str = "srun"
    srun_mpi: str = "pmi2"  # srun --mpi=TYPE; "default": the site's MpiDefault
    signal_lead: int = 60
    mem: str = ""
    mem_per_cpu: str = ""
    gres: str = ""
    qos: str = ""
    constraint: str = ""
    mail_type: str = ""
    mail_user: str = ""
    sbatch_options: tuple[str, ...] = ()
    template: str = ""


ARRAY_TASK = "${SLURM_ARRAY_TASK_ID}"
_SBATCH_VALUE = re.compile(r"[!#%&()*+,\-./0-9:=?@A-Z\[\]^_a-z|~]+")  # printable, no quotes
_OPTION = re.compile(r"[a-z][a-z0-9-]*")
_MPI_TYPE = re.compile(r"[a-z][a-z0-9_]*")
_TIME = re.compile(r"([0-9]+-)?[0-9]+(:[0-9]{1,2}){0,2}")
TIME_FORMS = "minutes, HH:MM:SS or D-HH:MM:SS"  # what _TIME takes, as messages say it


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
        raise InputError(f"submit error: --time {shown(value)}: use {TIME_FORMS}")
    return value


def extra_lines(res: Resources, array: str) -> list[str]:
    """#SBATCH lines of the optional options, the pass-through ones and the array."""
    lines = []
    for key in OPTIONAL:
        value = getattr(res, key)
        if value:
            option = "--" + key.replace("_", "-")
            lines.append(f"#SBATCH {option}={sbatch_value(option, value)}")
    for item in res.sbatch_options:
        option, sep, value = item.partition("=")
        option = option.removeprefix("--")
        if not _OPTION.fullmatch(option):
            raise InputError(f"submit error: --sbatch {shown(item)}: not an sbatch option name")
        if option in MANAGED:
            raise InputError(
                f"submit error: --sbatch {shown(item)}: mpifl sets this itself ({MANAGED[option]})"
            )
        value = sbatch_value(f"--sbatch {option}", value) if sep else ""
        lines.append(f"#SBATCH --{option}" + (f"={value}" if sep else ""))
    if array:
        lines.append(f"#SBATCH --array={array}")
    return lines


def template_text(res: Resources, placeholders: Iterable[str]) -> tuple[str, str]:
    """(template text, where it came from): --template, else $MPIFL_SLURM_TEMPLATE, else
    the packaged one. InputError if it cannot be read or lacks one of `placeholders`, so
    that no option is silently dropped."""
    path = Path(res.template or os.environ.get(TEMPLATE_ENV, "") or TEMPLATE)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"submit error: template {path}: cannot read it ({exc})") from None
    missing = [p for p in placeholders if "{" + p + "}" not in text]
    if missing:
        raise InputError(
            f"submit error: template {path}: lacks the placeholders "
            + ", ".join("{" + p + "}" for p in missing)
        )
    return text, str(path)


def render(name: str, job: str, output: str, log: str, res: Resources, array: str = "") -> str:
    """The batch script text. `job` and `output` contain ${SLURM_ARRAY_TASK_ID} exactly
    when `array` is given (a job array's task files); nowhere else may they hold '$'."""
    for what, value in (("the job path", job), ("run.output", output)):
        if "$" in (value.replace(ARRAY_TASK, "") if array else value):
            raise InputError(f"submit error: {what} = {shown(value)}: must not contain '$'")
    if not _MPI_TYPE.fullmatch(res.srun_mpi):
        raise InputError(f"submit error: --srun-mpi {shown(res.srun_mpi)}: must be a plugin "
                         "name such as pmi2, pmix or cray_shasta, or 'default'")  # fmt: skip
    if res.launcher == "mpiexec":
        launcher = f"mpiexec -n {res.nodes * res.ntasks_per_node}"
    else:
        launcher = "srun" + ("" if res.srun_mpi == "default" else f" --mpi={res.srun_mpi}")
    for option, count in (("--nodes", res.nodes), ("--ntasks-per-node", res.ntasks_per_node),
                          ("--cpus-per-task", res.cpus_per_task),
                          ("--signal", res.signal_lead)):  # fmt: skip
        if count < 1:
            raise InputError(f"submit error: {option} {count}: must be >= 1")
    fields = dict(
        name=job_name(name),
        nodes=res.nodes,
        ntasks_per_node=res.ntasks_per_node,
        cpus_per_task=res.cpus_per_task,
        time=check_time(res.time),
        log=sbatch_value("the log path (from run.output)", log),
        signal_lead=res.signal_lead,
        extra="\n".join(extra_lines(res, array)),
        venv_bin=shell_word(str(Path(sys.executable).parent)),
        workdir=shell_word(str(Path.cwd())),
        job=shell_word(job),
        output=shell_word(output),
        launcher=launcher,
    )
    text, where = template_text(res, fields)
    try:
        return text.format(**fields)
    except (KeyError, IndexError, ValueError) as exc:
        raise InputError(
            f"submit error: template {where}: {describe(exc)} (known placeholders: "
            f"{', '.join(fields)}; write a literal brace as {{{{ or }}}})"
        ) from None


def require_sbatch() -> str:
    """The path of sbatch; InputError (before anything is written) if there is none."""
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise InputError(
            "submit error: sbatch not found; is SLURM installed here? (--dry-run renders only)"
        )
    return sbatch


def submit(script: Path) -> str:
    """sbatch the script; returns the job id."""
    proc = subprocess.run(
        [require_sbatch(), "--parsable", str(script)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise InputError(f"submit error: sbatch refused {script}: {proc.stderr.strip()}")
    return proc.stdout.strip().split(";")[0]
