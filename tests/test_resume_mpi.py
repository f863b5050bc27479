"""Checkpoints, resume after SIGKILL and SIGTERM, bitwise reproducibility, NaN clients."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import psutil
import pytest

from mpifl.results.schema import Status
from tests.conftest import (
    ROOT,
    assert_same_results,
    env,
    mpiexec,
    mpifl,
    run_here,
    run_ok,
    set_args,
)

pytestmark = pytest.mark.mpi

SETS = ["run.rounds=8", "checkpoint.every=2", "train.epochs=2"]


def final_state(path: Path) -> dict[str, bytes]:
    with h5py.File(path) as f:
        assert f.attrs["status"] == "complete"
        out = {}
        f["final_state"].visititems(
            lambda name, obj: (
                out.__setitem__(name, obj[()].tobytes()) if isinstance(obj, h5py.Dataset) else None
            )
        )
        out["rounds"] = f["rounds"]["test_loss"].tobytes()
        return out


def start(job: Path, out: Path, *sets: str) -> subprocess.Popen:
    cmd = [mpiexec(), "-n", "2", sys.executable, "-m", "mpifl", "run", str(job)]
    cmd += ["--output", str(out), *set_args(*SETS, *sets)]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )  # fmt: skip


def wait_for_rounds(out: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            with h5py.File(out, "r", libver="latest", swmr=True) as f:
                if len(f["rounds"]) >= n:
                    return
        except (OSError, KeyError):
            pass
        time.sleep(0.05)
    raise AssertionError("the run did not get far enough")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    """An uninterrupted 2-rank run of the small job with REFT-free FedAvg."""
    from tests.conftest import SMALL_JOB

    folder = tmp_path_factory.mktemp("ref")
    job = folder / "job.toml"
    job.write_text(SMALL_JOB.format(output=folder / "unused.h5"))
    out = folder / "ref.h5"
    proc = mpifl("run", str(job), "--output", str(out), *set_args(*SETS), ranks=2)
    assert proc.returncode == 0, proc.stderr
    return job, final_state(out)


def test_kill_9_then_resume_is_bitwise_identical(reference, tmp_path):
    job, expected = reference
    out = tmp_path / "run.h5"
    proc = start(job, out)
    wait_for_rounds(out, 5, proc)  # a checkpoint after round 4 exists by then
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    with h5py.File(out, "r", libver="latest", swmr=True) as f:  # still readable, intact rounds
        assert f.attrs["status"] == "running"
        rounds = f["rounds"]["round"][:]
        assert rounds.tolist() == list(range(1, len(rounds) + 1)) and len(rounds) >= 5
    resumed = mpifl("run", str(job), "--output", str(out), "--resume", *set_args(*SETS), ranks=2)
    assert resumed.returncode == 0, resumed.stderr
    assert final_state(out) == expected


def test_sigterm_checkpoints_and_resumes(reference, tmp_path):
    job, expected = reference
    out = tmp_path / "run.h5"
    proc = start(job, out)
    wait_for_rounds(out, 2, proc)
    ranks = [
        p
        for p in psutil.Process(proc.pid).children(recursive=True)
        if "mpifl" in " ".join(p.cmdline())
    ]
    assert len(ranks) == 2
    for p in ranks:  # what SLURM does at a time limit: SIGTERM to every task
        p.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 3, stderr
    assert "stopped by SIGTERM" in stderr and "SIGTERM received: stopping once" in stderr
    # the command to resume with is the one that ran (quoted), not a placeholder
    assert f"resume (on any rank count) with: mpifl run {job} --output {out} --set" in stderr
    assert stderr.rstrip().endswith("--set train.epochs=2 --resume"), stderr
    with h5py.File(out) as f:
        assert f.attrs["status"] == "interrupted"
        next_round = int(f.attrs["next_round"])
        assert next_round == len(f["rounds"]) + 1 < 9  # the round to resume with
    resumed = mpifl("run", str(job), "--output", str(out), "--resume", *set_args(*SETS), ranks=1)
    assert resumed.returncode == 0, resumed.stderr  # on another rank count, too
    assert final_state(out) == expected
    # the header, the summary and the file name this part's rank count and command; the
    # first part is kept in `parts`
    assert "1 rank x 1 torch thread" in resumed.stdout and ", 1 rank, " in resumed.stdout
    with h5py.File(out) as f:
        assert f.attrs["n_ranks"] == 1 and "--resume" in f.attrs["command"]
        parts = f.attrs["parts"].splitlines()
    assert len(parts) == 1 and parts[0].startswith(f"rounds 1-{next_round - 1}: 2 ranks on ")
    assert "--resume" not in parts[0] and str(out) in parts[0]


def test_resume_starts_fresh_runs_and_refuses_a_changed_config(reference, tmp_path):
    job, expected = reference
    out = tmp_path / "none.h5"
    proc = mpifl("run", str(job), "--output", str(out), "--resume", *set_args(*SETS))
    assert proc.returncode == 0 and "starting at round 1" in proc.stderr, proc.stderr
    assert final_state(out) == expected
    assert not (tmp_path / "none.h5.ckpt").exists()  # a complete run keeps no checkpoints
    again = mpifl("run", str(job), "--output", str(out), "--resume", *set_args(*SETS))
    assert again.returncode == 0 and "already complete" in again.stderr
    harmless = ["checkpoint.every=7", "state.cache_bytes=1000000"]  # cannot change results
    spaced = mpifl("run", str(job), "--output", str(out), "--resume", *set_args(*SETS, *harmless))
    assert spaced.returncode == 0 and "already complete" in spaced.stderr, spaced.stderr
    changed = mpifl(
        "run", str(job), "--output", str(out), "--resume", *set_args(*SETS, "train.lr=0.5")
    )
    assert changed.returncode == 2 and "config differs" in changed.stderr
    assert "train.lr was" in changed.stderr and "now 0.5" in changed.stderr


@pytest.mark.parametrize(
    ("method", "extra"),
    [
        ("fedavg", "train.group=3"),  # batched groups of 3, spread over the ranks
        ("submodel", "train.group=1"),  # clients one at a time
        ("koala", "train.group=3"),  # groups of one family each
        ("reft", "train.group=3"),  # client state: groups within each home rank
        ("fedmrl", "train.group=3"),  # the same, on FedMRL's two-extractor model
    ],
)
def test_final_model_identical_for_1_2_4_ranks(small_job, tmp_path, method, extra):
    """Every table and the final model: the same bytes on 1, 2 and 4 ranks; each rank's
    row of the ranks table is there."""
    sets = [f"algorithm.name='{method}'", "run.rounds=2", extra]
    run_here(small_job, tmp_path / "n0.h5", *sets)
    for ranks in (2, 4):
        out = tmp_path / f"n{ranks}.h5"
        proc = mpifl("run", str(small_job), "--output", str(out), *set_args(*sets), ranks=ranks)
        assert proc.returncode == 0, proc.stderr
    assert final_state(tmp_path / "n0.h5") == final_state(tmp_path / "n4.h5")
    for ranks in (2, 4):
        assert_same_results(tmp_path / "n0.h5", tmp_path / f"n{ranks}.h5")
    with h5py.File(tmp_path / "n4.h5") as f:
        rows = f["ranks"][:]
    assert sorted(set(rows["rank"])) == [0, 1, 2, 3] and len(rows) == 4 * 2
    assert np.all(rows["peak_rss"] > 0) and np.all(rows["wall_time"] > 0)


def test_non_finite_client_is_rejected(small_job, tmp_path):
    out = tmp_path / "nan.h5"
    run_ok(small_job, out, "train.lr=1000", "run.rounds=2")
    with h5py.File(out) as f:
        part, rounds = f["participation"][:], f["rounds"][:]
    assert np.any(part["status"] == Status.REJECTED)
    assert rounds["rejected"].sum() == np.sum(part["status"] == Status.REJECTED)
