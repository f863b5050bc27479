"""What a log starts with and how its lines are stamped."""

from __future__ import annotations

import io
import os
import pty
import re
import subprocess
import sys

import numpy as np
import pytest

from mpifl.progress import Progress, header, resume_command, stamp
from mpifl.results.schema import ROUNDS_DTYPE
from tests.conftest import ROOT, env, mpiexec

ATTRS = {"mpifl_version": "0.2.0", "name": "q", "algorithm": "fedavg", "n_ranks": 1,
         "threads_per_rank": 2, "hostname": "node7", "torch_version": "2.13.0+cpu",
         "mpi4py_version": "4.1.2", "mpi_library": "MPICH", "seed": 3,
         "command": "/x/mpifl/__main__.py run jobs/q.toml --set run.rounds=5"}  # fmt: skip


def test_the_header_names_the_command_seed_and_slurm_job(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    text = header(ATTRS, 5, 0, "results/q.h5")
    assert "1 rank x 2 torch threads on node7" in text
    assert "seed 3; command mpifl run jobs/q.toml --set run.rounds=5; SLURM job 4242" in text
    monkeypatch.delenv("SLURM_JOB_ID")
    assert "SLURM" not in header(ATTRS, 5, 0, "results/q.h5")


def test_timestamps_carry_their_zone():
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}", stamp(0.0))


def test_resume_command_is_the_command_that_ran_quoted():
    argv = ["/v/bin/mpifl", "run", "my job.toml", "--overwrite", "--set", "run.rounds=5"]
    assert resume_command(argv) == "mpifl run 'my job.toml' --set run.rounds=5 --resume"
    assert resume_command([*argv[:3], "--resume"]).count("--resume") == 1


def _rows(n: int) -> list[np.void]:
    rows = np.zeros(n, dtype=ROUNDS_DTYPE)
    rows["round"] = np.arange(1, n + 1)
    rows["test_accuracy"], rows["client_accuracy"] = 0.5, np.nan
    return list(rows)


def test_progress_draws_a_bar_or_lines_as_asked():
    bar, lines = io.StringIO(), io.StringIO()
    for stream, style in ((bar, "bar"), (lines, "lines")):
        progress = Progress(3, 0, stream, style)
        for row in _rows(3):
            progress.update(row)
    assert bar.getvalue().count("\r[") == 3 and bar.getvalue().count("\n") == 1
    midway = Progress(3, 0, io.StringIO(), "bar")  # a SIGTERM message starts a new line
    midway.update(_rows(3)[0])
    assert midway.mid_line and not Progress(3, 0, io.StringIO(), "lines").mid_line
    assert lines.getvalue().count("\n") == 3 and "\r" not in lines.getvalue()
    assert "round    2/3  acc 0.5000" in lines.getvalue()


@pytest.mark.mpi
def test_a_person_watching_through_mpiexec_is_seen(tmp_path):
    """Rank 0's stdout is a pipe to mpiexec: watched when mpiexec writes to a terminal, not
    when it writes to a file or into a pipe (`| tee`)."""
    code = "import sys; from mpifl.progress import watched; print(watched(sys.stdout))"
    probe = [mpiexec(), "-n", "1", sys.executable, "-c", code]
    leader, follower = pty.openpty()
    subprocess.run(probe, stdout=follower, env=env(), cwd=ROOT, timeout=60, check=True)
    os.close(follower)
    assert os.read(leader, 100).strip() == b"True"
    os.close(leader)
    with open(tmp_path / "log", "w") as log:
        subprocess.run(probe, stdout=log, env=env(), cwd=ROOT, timeout=60, check=True)
    assert (tmp_path / "log").read_text().strip() == "False"
    piped = subprocess.run(probe, capture_output=True, text=True, env=env(), cwd=ROOT, timeout=60)
    assert piped.stdout.strip() == "False"
