"""Helpers shared by the benchmark scripts: launching under mpiexec, reading results."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from mpifl.results import read_run

ROOT = Path(__file__).resolve().parents[1]


def mpiexec() -> str:
    """The mpiexec beside this Python (the venv's mpich), else the one on PATH."""
    local = Path(sys.executable).parent / "mpiexec"
    return str(local) if local.exists() else (shutil.which("mpiexec") or "mpiexec")


def run(cmd: list[str]) -> str:
    """Run a command from the repo root; fail loudly with its stderr."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark step failed: {' '.join(cmd)}\n{proc.stderr}")
    return proc.stdout


def mpifl_run(ranks: int, job: str, *overrides: str) -> Path:
    """Run an mpifl job on `ranks` ranks into a temporary file; returns its path."""
    out = Path(tempfile.mkdtemp(prefix="mpifl-bench-")) / "run.h5"
    sets = [a for o in overrides for a in ("--set", o)]
    run(
        [
            mpiexec(),
            "-n",
            str(ranks),
            sys.executable,
            "-m",
            "mpifl",
            "run",
            job,
            "--output",
            str(out),
            *sets,
        ]
    )
    return out


def tables(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(rounds, ranks) tables of a result file, as numpy record arrays."""
    run = read_run(path)
    return tuple(run.tables[name].to_records(index=False) for name in ("rounds", "ranks"))


def bare_w1(ranks: int, rounds: int, cohort: int = 50) -> list[float]:
    """Round seconds of the bare mpi4py + torch W1 reference."""
    script = ["bench/w1_bare.py", "--rounds", str(rounds), "--cohort", str(cohort)]
    out = run([mpiexec(), "-n", str(ranks), sys.executable, *script])
    return json.loads(out.strip().splitlines()[-1])["round_seconds"]


def timed(values: np.ndarray | list[float], warmup: int = 1, tail: int = 0) -> np.ndarray:
    """Drop warm-up rounds (and `tail` final rounds, e.g. one that evaluates)."""
    values = np.asarray(values, dtype=np.float64)
    return values[warmup : len(values) - tail]
