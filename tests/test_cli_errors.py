"""Bad input: a one-line message naming the problem, exit code 2, nothing written."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import mpifl, mpifl_cases

CASES = {
    "unknown key": (["--set", "run.roundz=3"], "run.roundz"),
    "wrong type": (["--set", "run.rounds='ten'"], "run.rounds"),
    "zero clients": (["--set", "fleet.clients=0"], "fleet.clients"),
    "negative clients": (["--set", "fleet.clients=-5"], "fleet.clients"),
    "cohort larger than fleet": (["--set", "round.cohort=50"], "round.cohort"),
    "dirichlet alpha zero": (["--set", "data.alpha=0.0"], "data.alpha"),
    "dirichlet alpha negative": (["--set", "data.alpha=-1.0"], "data.alpha"),
    "unknown method": (["--set", "algorithm.name='fedsgd'"], "algorithm.name"),
    "unknown partition": (["--set", "data.partition='zipf'"], "data.partition"),
    "missing data path": (
        ["--set", "data.name='npz'", "--set", "data.path='/nonexistent/d.npz'"],
        "data.path",
    ),
    "npz without path": (["--set", "data.name='npz'"], "data.path"),
    "bad --set syntax": (["--set", "run.rounds"], "KEY=VALUE"),
    "more clients than data": (
        ["--set", "fleet.clients=1000", "--set", "round.cohort=10"],
        "fleet.clients",
    ),
    "too many conv blocks": (["--set", "model.channels=[8, 8, 8, 8]"], "model.channels"),
    "negative deadline": (["--set", "round.deadline=-1.0"], "round.deadline"),
    "momentum out of range": (["--set", "train.momentum=1.5"], "train.momentum"),
    "unknown output placeholder": (["--set", "run.output='out/{foo}.h5'"], "run.output"),
    "fault after the last round": (
        ["--set", "faults.raise_on_rank=0", "--set", "faults.raise_at_round=50"],
        "faults.raise_at_round",
    ),
    "fault rank without a round": (["--set", "faults.raise_on_rank=0"], "faults.raise_on_rank"),
    "fault on a rank not there": (
        ["--set", "faults.raise_on_rank=99", "--set", "faults.raise_at_round=1"],
        "faults.raise_on_rank",
    ),
}


def _assert_clean_failure(proc, needle, out):
    assert proc.returncode == 2, proc.stderr
    message = proc.stderr.strip()
    assert message.startswith("mpifl: ") and needle in message, message
    assert "\n" not in message, message
    assert not out.exists()


def test_bad_config(small_job, tmp_path):
    """Every case in one process (the refusals come before a run starts)."""
    malformed, empty, data = (
        tmp_path / "malformed.toml",
        tmp_path / "empty.toml",
        tmp_path / "d.npz",
    )
    malformed.write_text("[run\nrounds = 3\n")
    empty.write_text("# nothing yet\n")
    np.savez(data, x=np.zeros((50, 8, 8)), labels=np.zeros(50))
    cases = {
        name: (["run", str(small_job), *args], needle) for name, (args, needle) in CASES.items()
    }
    cases |= {
        "malformed TOML": (["run", str(malformed)], "not valid TOML"),
        "empty job file": (["run", str(empty)], "holds no settings"),
        "malformed data file": (["run", str(small_job), "--set", "data.name='npz'", "--set",
                                 f"data.path='{data}'"], "missing arrays"),
        "resume and overwrite": (["run", str(small_job), "--resume", "--overwrite"],
                                 "--resume continues the output and --overwrite replaces it"),
    }  # fmt: skip
    results = mpifl_cases([args for args, _ in cases.values()])
    for (case, (_, needle)), result in zip(cases.items(), results, strict=True):
        message = result["stderr"].strip()
        assert result["rc"] == 2, (case, message)
        assert message.startswith("mpifl: ") and needle in message, (case, message)
        assert "\n" not in message, (case, message)
    assert not (tmp_path / "out.h5").exists()


@pytest.mark.parametrize("key", ["data.path", "fleet.trace"])
def test_a_fifo_or_a_device_as_an_input_file_is_refused_not_waited_on(key, small_job, tmp_path):
    fifo = tmp_path / "data.npz"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        sets = ["--set", f"{key}='{path}'"] + (
            ["--set", "data.name='npz'"] if key == "data.path" else []
        )
        proc = mpifl("run", str(small_job), *sets, timeout=60)
        _assert_clean_failure(proc, "regular file", tmp_path / "out.h5")


def test_missing_job_file(tmp_path):
    proc = mpifl("run", str(tmp_path / "nope.toml"))
    _assert_clean_failure(proc, "job file not found", tmp_path / "out.h5")


@pytest.mark.mpi
def test_bad_input_under_mpiexec_reports_once(small_job, tmp_path):
    proc = mpifl("run", str(small_job), "--set", "fleet.clients=1000", ranks=2)
    _assert_clean_failure(proc, "fleet.clients", tmp_path / "out.h5")


def test_validate_prints_resolved_config(small_job):
    proc = mpifl("validate", str(small_job), "--set", "run.rounds=4")
    assert proc.returncode == 0
    assert "rounds = 4" in proc.stdout and "[fleet.classes.mcu]" in proc.stdout
    bad = mpifl("validate", str(small_job), "--set", "run.rounds=0")
    assert bad.returncode == 2 and "run.rounds" in bad.stderr


def test_a_typo_gets_a_did_you_mean(small_job):
    typos = {"algorithm.name='fedavgg'": "did you mean 'fedavg'?",
             "data.partition='dirichet'": "did you mean 'dirichlet'?",
             "train.lrr=0.1": "did you mean 'lr'?"}  # fmt: skip
    results = mpifl_cases([["validate", str(small_job), "--set", typo] for typo in typos])
    for (typo, hint), result in zip(typos.items(), results, strict=True):
        assert result["rc"] == 2 and hint in result["stderr"], (typo, result)
        assert result["stderr"].count("\n") == 1, (typo, result)


def test_help_names_every_command_and_shows_defaults():
    top = mpifl("--help")
    for command in ("run", "validate", "fleet", "submit", "sweep", "report", "pretrain"):
        assert f"\n    {command} " in top.stdout, command
    submit = mpifl("submit", "--help").stdout
    assert "01:00:00)" in submit and "(default: 60)" in submit and "(default: srun)" in submit


def test_a_second_run_is_told_the_flag_to_type(small_job, tmp_path):
    """An existing output: the message names --output, the flag a user types."""
    assert mpifl("run", str(small_job), "--set", "run.rounds=1").returncode == 0
    proc = mpifl("run", str(small_job), "--set", "run.rounds=1")
    assert proc.returncode == 2 and "choose another --output" in proc.stderr, proc.stderr
