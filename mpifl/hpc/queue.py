"""What SLURM says about a job array's tasks: `squeue` for the live ones, `sacct` (when
the site keeps accounting) for how the others ended."""

from __future__ import annotations

import getpass
import re
import shutil
import subprocess

# a task as squeue -r / sacct -X print it: JOB_TASK, or JOB_[a-b,c] for pending ranges
_TASK = re.compile(r"(\d+)_(\d+|\[[0-9,\-%]+\])")
LIVE = {"PENDING": "queued", "REQUEUED": "queued", "REQUEUE_HOLD": "queued",
        "CONFIGURING": "running", "RUNNING": "running", "COMPLETING": "running",
        "SUSPENDED": "running", "RESIZING": "running"}  # fmt: skip


def _tasks(spec: str) -> list[int]:
    """Task numbers of "7" or "[0-3,5%2]"."""
    if not spec.startswith("["):
        return [int(spec)]
    out = []
    for part in spec.strip("[]").split("%")[0].split(","):
        low, _, high = part.partition("-")
        out += range(int(low), int(high or low) + 1)
    return out


def parse(text: str) -> dict[tuple[str, int], str]:
    """(job id, task) -> state from lines "JOB_TASK STATE" or "JOB_TASK|STATE" (the first
    word of the state: "CANCELLED by 0" is CANCELLED)."""
    states = {}
    for line in text.splitlines():
        fields = line.replace("|", " ").split()
        match = _TASK.fullmatch(fields[0]) if len(fields) >= 2 else None
        if match:
            for task in _tasks(match.group(2)):
                states[(match.group(1), task)] = fields[1].rstrip("+")
    return states


def _ask(command: list[str]) -> str | None:
    """A SLURM command's output; None if it is missing or fails (no accounting, no
    controller)."""
    if shutil.which(command[0]) is None:
        return None
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def slurm_states(job_ids: list[str]) -> dict[tuple[str, int], str] | None:
    """(job id, task) -> SLURM state of the tasks of these arrays that SLURM can tell of:
    the user's live tasks from squeue, ended ones from sacct (where the site keeps
    accounting). A task of these jobs that neither lists has left the queue. None if
    squeue cannot be asked (no SLURM here)."""
    live = _ask(["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i %T"])
    if live is None:
        return None
    ended = _ask(["sacct", "-n", "-P", "-X", "-j", ",".join(job_ids), "-o", "JobID,State"])
    states = {**parse(ended or ""), **parse(live)}
    return {key: state for key, state in states.items() if key[0] in job_ids}
