"""`mpifl new`: the job and method it writes are valid, and the method runs as FedAvg."""

from __future__ import annotations

import h5py
import pytest

from tests.conftest import mpifl, mpifl_cases


def final_weights(path) -> bytes:
    with h5py.File(path) as f:
        assert f.attrs["status"] == "complete"
        return f["final_state/weights"][()].tobytes()


def test_a_new_job_is_valid_and_commented(tmp_path):
    path = tmp_path / "jobs" / "mine.toml"
    proc = mpifl("new", "job", str(path), "--method", "fedprox")
    assert proc.returncode == 0, proc.stderr
    text = path.read_text()
    assert 'name = "mine"' in text and 'name = "fedprox"' in text and "\nmu = " in text
    assert "# root of every random stream\nseed = 0" in text
    assert mpifl("validate", str(path)).returncode == 0
    again = mpifl("new", "job", str(path))
    assert again.returncode == 2 and "exists; nothing written" in again.stderr
    assert path.read_text() == text


@pytest.mark.mpi
def test_a_new_method_runs_and_equals_fedavg(tmp_path):
    proc = mpifl("new", "method", "my_method", "--folder", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    job = tmp_path / "my_method.toml"
    sets = ["--set", "run.rounds=3", "--set", "fleet.clients=12", "--set", "round.cohort=6"]
    ours = mpifl("run", str(job), "--output", str(tmp_path / "ours.h5"), *sets,
                 ranks=2, cwd=tmp_path)  # fmt: skip
    assert ours.returncode == 0, ours.stderr
    theirs = mpifl("run", str(job), "--output", str(tmp_path / "fedavg.h5"), *sets,
                   "--set", "algorithm.name='fedavg'", ranks=2, cwd=tmp_path)  # fmt: skip
    assert theirs.returncode == 0, theirs.stderr
    assert final_weights(tmp_path / "ours.h5") == final_weights(tmp_path / "fedavg.h5")


def test_a_bad_method_name_writes_nothing(tmp_path):
    names = ["My-Method", "class", "x.y", "Upper", "json"]
    cases = mpifl_cases([["new", "method", name, "--folder", str(tmp_path)] for name in names])
    for name, case in zip(names, cases, strict=True):
        assert case["rc"] == 2 and "new error" in case["stderr"], (name, case)
    assert not list(tmp_path.iterdir())
