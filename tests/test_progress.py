"""What a log starts with and how its lines are stamped."""

from __future__ import annotations

import re

from mpifl.progress import header, stamp

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
