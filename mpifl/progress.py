"""Rank 0's progress output: a bar when a person watches (a terminal, also through
mpiexec's pipes), one plain line per round in a log file."""

from __future__ import annotations

import math
import os
import shlex
import sys
import time
from typing import TextIO

import numpy as np

from mpifl.results.schema import Status

BAR = 24
# processes that relay a rank's output (MPICH, Open MPI, SLURM): a rank's stdout is a pipe
# to one of them, and a person watches if the first one not writing to a pipe writes to a
# terminal
LAUNCHERS = frozenset({"hydra_pmi_proxy", "mpiexec", "mpiexec.hydra", "mpirun", "orterun",
                       "orted", "prterun", "prted", "srun", "slurmstepd"})  # fmt: skip
STYLES = ("auto", "bar", "lines")


def _parent(pid: int) -> tuple[int, str, str]:
    """A process's parent: (pid, name, what its stdout is); OSError if not readable."""
    with open(f"/proc/{pid}/stat") as f:
        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
    with open(f"/proc/{ppid}/comm") as f:
        name = f.read().strip()
    return ppid, name, os.readlink(f"/proc/{ppid}/fd/1")


def watched(stream: TextIO) -> bool:
    """Whether a person watches `stream`: it is a terminal, or it is a pipe through
    launchers (mpiexec, its proxy) whose output ends on a terminal. A log file, `| tee`,
    sbatch's output and anything unreadable in /proc count as not watched."""
    if stream.isatty():
        return True
    try:
        pid, out = os.getpid(), os.readlink(f"/proc/self/fd/{stream.fileno()}")
        for _ in range(8):
            if not out.startswith(("pipe:", "socket:")):
                return out.startswith(("/dev/pts/", "/dev/tty"))
            pid, name, out = _parent(pid)
            if name not in LAUNCHERS:
                return False
    except (OSError, ValueError, AttributeError, IndexError):
        return False
    return False


def _accuracies(row: np.void) -> str:
    """`acc` (global model, global test set) and `client acc` (own test splits, client mean),
    each where the method has it."""
    parts = []
    for label, key in (("acc", "test_accuracy"), ("client acc", "client_accuracy")):
        if not math.isnan(row[key]):
            parts.append(f"{label} {row[key]:.4f}")
    return "  ".join(parts) or "acc    -  "


def clock(seconds: float) -> str:
    """Seconds as H:MM:SS."""
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def stamp(when: float | None = None) -> str:
    """Local time as YYYY-MM-DD HH:MM:SS +ZZZZ (its offset from UTC)."""
    return time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(when))


def header(attrs: dict[str, object], rounds: int, first: int, output: str) -> str:
    """The lines a log starts with: what runs, where, on what, with which software."""
    a = {k: attrs.get(k, "?") for k in ("mpifl_version", "name", "algorithm", "n_ranks",
                                         "threads_per_rank", "hostname", "torch_version",
                                         "mpi4py_version", "mpi_library", "seed",
                                         "command")}  # fmt: skip
    slurm = f"; SLURM job {os.environ['SLURM_JOB_ID']}" if os.environ.get("SLURM_JOB_ID") else ""
    start = f"{first + 1} (resumed)" if first else "1"
    commit = f", git {attrs['git_commit']}" if attrs.get("git_commit") else ""
    return "\n".join([
        f"[{stamp()}] mpifl {a['mpifl_version']}: run '{a['name']}' ({a['algorithm']}), "
        f"rounds {start} to {rounds}",
        f"  {_count(a['n_ranks'], 'rank')} x {_count(a['threads_per_rank'], 'torch thread')} "
        f"on {a['hostname']}; output {output}",
        f"  seed {a['seed']}; command mpifl {_arguments(str(a['command']))}{slurm}",
        f"  torch {a['torch_version']}, mpi4py {a['mpi4py_version']}, {a['mpi_library']}{commit}",
    ])  # fmt: skip


def _count(n: object, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def _arguments(command: str) -> str:
    """The job file and options of a recorded command line (its program path left out)."""
    program, _, arguments = command.partition(" ")
    return arguments if program.endswith((".py", "mpifl")) else command


def resume_command(argv: list[str]) -> str:
    """The command that resumes a run started by `argv` (`mpifl run ...`): the same job,
    options and output, `--overwrite` dropped, `--resume` added; quoted for a shell."""
    args = [a for a in argv[1:] if a not in ("--overwrite", "--resume")]
    return "mpifl " + shlex.join([*args, "--resume"])


def round_line(row: np.void, rounds: int, elapsed: float, eta: float) -> str:
    """One round as a plain line (what a SLURM log shows): a timestamp, then the round
    (numbered from 1, as in the tables), its figures, the wall time since the start and
    the estimated time to the end."""
    others = ", ".join(
        f"{s.name.lower()} {row[s.name.lower()]}"
        for s in Status
        if s != Status.TRAINED and row[s.name.lower()]
    )
    return (
        f"[{stamp()}] round {row['round']:>4}/{rounds}  {_accuracies(row)}  "
        f"loss {row['train_loss']:.4f}  trained {row['trained']}/{row['sampled']}"
        + (f" ({others})" if others else "")
        + f"  vtime {row['virtual_time']:.1f}s  elapsed {clock(elapsed)}  eta {clock(eta)}"
    )


class Progress:
    """Reports each round: redraws a bar in place (`style` "bar", or "auto" when a person
    watches the stream), else prints a plain line per round ("lines")."""

    def __init__(
        self, rounds: int, first: int = 0, stream: TextIO = sys.stdout, style: str = "auto"
    ) -> None:
        self.rounds, self.first, self.stream = rounds, first, stream
        self.tty = style == "bar" or (style == "auto" and watched(stream))
        self.start = time.monotonic()
        self.drawn = 0  # the last round reported

    def update(self, row: np.void) -> None:
        """Report one finished round."""
        done = self.drawn = int(row["round"])
        elapsed = time.monotonic() - self.start
        eta = elapsed / max(done - self.first, 1) * (self.rounds - done)
        if not self.tty:
            print(round_line(row, self.rounds, elapsed, eta), file=self.stream, flush=True)
            return
        filled = BAR * done // self.rounds
        bar = "#" * filled + "-" * (BAR - filled)
        text = (
            f"\r[{bar}] {done}/{self.rounds}  {_accuracies(row)}  vtime "
            f"{row['virtual_time']:.0f}s  eta {clock(eta)}"
        )
        print(text, end="\n" if done == self.rounds else "", file=self.stream, flush=True)

    @property
    def mid_line(self) -> bool:
        """Whether a bar is drawn and its line not yet ended."""
        return self.tty and 0 < self.drawn < self.rounds

    def end(self) -> None:
        """End a bar left short of the last round (a callback stopped the run)."""
        if self.tty and 0 < self.drawn < self.rounds:
            print(file=self.stream, flush=True)
