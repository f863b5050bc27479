"""`mpifl sweep run`: a sweep's tasks on this machine, one after another, without SLURM."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from mpifl.engine.signals import INTERRUPTED
from mpifl.errors import InputError
from mpifl.hpc.sweep import Sweep, blocked, local_log, status, unfinished, write_tasks
from mpifl.progress import clock, stamp
from mpifl.results.status import read_status


def mpiexec() -> str | None:
    """The mpiexec beside this Python (a venv's mpich), else the one on PATH."""
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


def task_command(sweep: Sweep, i: int, ranks: int, again: str = "--resume") -> list[str]:
    """The command that runs task i on `ranks` ranks; `again`: --resume (continue it from
    its checkpoint, or start it) or --overwrite (start it over)."""
    run = [sys.executable, "-m", "mpifl", "run", str(sweep.task_job(i)),
           "--output", str(sweep.task_output(i)), again, "--progress", "lines"]  # fmt: skip
    if ranks == 1:
        return run
    launcher = mpiexec()
    if launcher is None:
        raise InputError(f"sweep error: --ranks {ranks} needs mpiexec, and none was found")
    return [launcher, "-n", str(ranks), *run]


def run_locally(sweep: Sweep, ranks: int) -> int:
    """Run every task not done (nor queued or running under SLURM) in order, each logged to
    <folder>/task_<i>.local.log. SIGTERM or Ctrl-C stops the task under way at its next
    checkpoint (a later `sweep run` resumes it) and the sweep with it. Returns 0 if every
    task is done, 3 if stopped, 1 if a task failed (the others still run)."""
    if ranks < 1:
        raise InputError(f"sweep error: --ranks {ranks}: must be >= 1")
    states = status(sweep)
    todo = unfinished(states)
    for line in blocked(sweep, states):
        print(line, file=sys.stderr)
    write_tasks(sweep)
    if not todo:
        print(f"mpifl: no task of {sweep.name} is left to run here (`mpifl sweep status` "
              "shows them)")  # fmt: skip
        return 0
    stop = TaskRunner()
    failed = []
    for n, i in enumerate(todo, 1):
        log = local_log(sweep, i)
        print(f"[{stamp()}] task {i} ({n} of {len(todo)}): {sweep.describe(i)}; log {log}",
              flush=True)  # fmt: skip
        start = time.monotonic()
        code = stop.run(task_command(sweep, i, ranks), log)
        took = clock(time.monotonic() - start)
        if stop.requested:
            print(f"  stopped after {took}: {_left(sweep.task_output(i))}", flush=True)
            return INTERRUPTED
        if code == 0:
            print(f"  done in {took}", flush=True)
        else:
            failed.append(i)
            print(f"  failed (exit {code}) after {took}; the log's end says why", flush=True)
    if failed:
        print(f"mpifl: {len(failed)} of {len(todo)} tasks failed: {failed}", file=sys.stderr)
        return 1
    print(f"mpifl: {sweep.name}: all {len(sweep.tasks)} tasks done")
    return 0


def _left(output: Path) -> str:
    """What a stopped task left, for the line that says it stopped."""
    try:
        state, _ = read_status(output)
    except OSError:
        return "it had written nothing: `mpifl sweep run` starts it over"
    if state == "complete":
        return "it had finished"
    if state == "interrupted":
        return "checkpointed: `mpifl sweep run` resumes it"
    return f"its file says {state}: `mpifl sweep run` resumes it from its last checkpoint"


class TaskRunner:
    """Runs a task in its own process group; SIGTERM or SIGINT to this process is passed
    on to the task as SIGTERM (mpifl checkpoints and exits 3): `requested` says so, and the
    caller stops (a sweep, the study)."""

    def __init__(self) -> None:
        self.requested = False
        self.child: subprocess.Popen | None = None

    def _handle(self, _signum: int, _frame: FrameType | None) -> None:
        self.requested = True
        if self.child is not None and self.child.poll() is None:
            os.killpg(self.child.pid, signal.SIGTERM)

    def run(self, command: list[str], log: Path) -> int:
        """The task's exit code."""
        previous = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            with open(log, "a") as out:
                self.child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                              start_new_session=True)  # fmt: skip
                return self.child.wait()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
