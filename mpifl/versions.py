"""The software a run used, for the result file's root attributes and the log header."""

from __future__ import annotations

import subprocess
from pathlib import Path

import torch

import mpifl
from mpifl.comm import Comm

CHECKOUT = Path(__file__).resolve().parents[1]


def git_commit() -> str:
    """The checkout's commit (with "-dirty" if files differ from it), or "" outside a git
    checkout."""
    if not (CHECKOUT / ".git").exists():
        return ""
    try:
        head = subprocess.run(["git", "-C", str(CHECKOUT), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=10)  # fmt: skip
        dirty = subprocess.run(["git", "-C", str(CHECKOUT), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=10)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return ""
    if head.returncode != 0:
        return ""
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def software(comm: Comm) -> dict[str, str]:
    """mpifl, torch, mpi4py and MPI library versions, and the git commit when run from a
    checkout."""
    return {
        "mpifl_version": mpifl.__version__,
        "torch_version": str(torch.__version__),
        **comm.library(),
        "git_commit": git_commit(),
    }
