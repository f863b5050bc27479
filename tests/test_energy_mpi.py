"""The solar sensor job under mpiexec: the same bytes on 1, 2 and 4 ranks, and across a
SIGTERM and --resume (the batteries are checkpointed)."""

from __future__ import annotations

import signal

import h5py
import psutil
import pytest

from mpifl.results import read_run
from tests.conftest import ROOT, assert_same_results, mpifl, run_here, run_ok, set_args
from tests.test_resume_mpi import start, wait_for_rounds

pytestmark = pytest.mark.mpi

JOB = ROOT / "jobs/solar_sensors.toml"
SETS = ("run.rounds=30", "fleet.clients=40", "round.cohort=10", "train.epochs=1",
        "fleet.classes.sensor.battery=4")  # fmt: skip


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("solar") / "ref.h5"
    run_ok(JOB, out, *SETS, ranks=2)
    return out


def test_devices_run_flat_and_recover_the_same_on_1_2_and_4_ranks(reference, tmp_path):
    run_here(JOB, tmp_path / "n1.h5", *SETS)
    run_ok(JOB, tmp_path / "n4.h5", *SETS, ranks=4)
    for ranks in (1, 4):
        assert_same_results(reference, tmp_path / f"n{ranks}.h5")
    run = read_run(reference)
    low = run.tables["rounds"]["low_battery"].to_numpy()
    assert low.any()  # some sampled devices were low ...
    charge = run.tables["participation"].groupby("client")["charge"]
    assert ((charge.min() < 0.6) & (charge.max() > 0.8)).any()  # ... and recovered (of 4 J)
    energy = run.tables["energy"]
    assert (energy["harvested"] > 0).all() and energy["flat"].max() > 0


def test_sigterm_then_resume_gives_the_same_bytes(reference, tmp_path):
    out = tmp_path / "run.h5"
    proc = start(JOB, out, *SETS, "checkpoint.every=0")
    wait_for_rounds(out, 3, proc)
    ranks = [p for p in psutil.Process(proc.pid).children(recursive=True)
             if "mpifl" in " ".join(p.cmdline())]  # fmt: skip
    for p in ranks:
        p.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 3, stderr
    with h5py.File(out) as f:
        assert f.attrs["status"] == "interrupted" and len(f["rounds"]) < 30
    resumed = mpifl("run", str(JOB), "--output", str(out), "--resume", *set_args(*SETS),
                    ranks=2)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert_same_results(reference, out)
