"""Emulation features seen in the result file: throttling, measured memory, availability,
memory budgets at evaluation."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest

from mpifl.results.schema import Status
from tests.conftest import mpifl, run_here
from tests.test_evaluation_mpi import LABEL_SKEW, eval_table, last


def device_class(name: str, flops: float, memory: float = 1e10) -> str:
    """A [fleet.classes.NAME] table: always online, fast links, given speed and memory."""
    return f"""
[fleet.classes.{name}]
weight = 1.0
flops = {flops}
memory = {memory}
uplink = 1e9
downlink = 1e9
latency = 0.0
availability = 1.0
"""


def _job(small_job, extra: str):
    small_job.write_text(small_job.read_text() + extra)
    return small_job


@pytest.mark.mpi
def test_throttled_client_at_half_speed_takes_twice_the_wall_time(small_job, tmp_path):
    # each client trains ~13 samples x 1 epoch; FLOP counts are exact, so choose speeds
    # that give ~0.15 s (fast) and ~0.3 s (slow) of virtual compute per client
    job = _job(small_job, device_class("slow", 5.0e7) + device_class("fast", 1.0e8))
    proc = mpifl(
        "run", str(job), "--set", "emulation.mode='throttled'", "--set", "fleet.spread=0.0",
        "--set", "emulation.availability='always'", "--set", "round.deadline=inf",
        "--set", "run.rounds=2", ranks=2,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with h5py.File(tmp_path / "out.h5") as f:
        part = f["participation"][:]
    trained = part[part["status"] == Status.TRAINED]
    per_flop = trained["wall_time"] / trained["flops"]
    slow = np.median(per_flop[trained["device_class"] == 0])
    fast = np.median(per_flop[trained["device_class"] == 1])
    assert 1.6 < slow / fast < 2.5, (slow, fast)
    # wall time follows the virtual compute time (time_scale = 1) within the host's overhead
    assert np.all(trained["wall_time"] >= trained["compute_time"])
    assert np.median(trained["wall_time"] / trained["compute_time"]) < 1.3


@pytest.mark.mpi
def test_measured_memory_marks_oom(tmp_path):
    job = tmp_path / "job.toml"
    job.write_text(
        f"""
[run]
rounds = 1
output = "{tmp_path / "out.h5"}"
[data]
name = "w1"
local_test_fraction = 0.0
[model]
channels = [32, 64]
kernel = 5
fc = 512
[train]
batch_size = 10
lr = 0.1
[fleet]
clients = 8
[round]
cohort = 8
[emulation]
memory = "measured"
availability = "always"
{device_class("tiny", 1e10, memory=1e6)}{device_class("big", 1e10)}"""
    )
    proc = mpifl("run", str(job), ranks=2)
    assert proc.returncode == 0, proc.stderr
    with h5py.File(tmp_path / "out.h5") as f:
        part, rounds = f["participation"][:], f["rounds"][:]
    tiny = part[part["device_class"] == 0]
    big = part[part["device_class"] == 1]
    assert len(tiny) and len(big)
    # the footprint check is off (memory = "measured"): both classes are scheduled
    assert np.all(part["rank"] >= 0)
    # gradients + momentum-free SGD of 2.16M parameters alone are 8.6 MB > 1 MB
    assert np.all(tiny["status"] == Status.OOM) and np.all(tiny["bytes_up"] == 0)
    assert np.all(big["status"] == Status.TRAINED)
    assert np.all(part["measured_memory"] >= 0)
    assert rounds["oom"][0] == len(tiny)


@pytest.mark.mpi
def test_trace_availability_from_a_fedscale_import(small_job, tmp_path):
    n = 20
    # 50 kbit/s links: sending the ~16 KB model takes ~2.6 s each way
    capacity = {c: {"computation": 1.0, "communication": 50.0} for c in range(n)}
    # client c is online in [0, 30) for even c, [0, 1.5) for odd c; traces repeat every 40 s
    behaviour = {
        c: {"active": [0.0], "inactive": [30.0 if c % 2 == 0 else 1.5], "finish_time": 40.0}
        for c in range(n)
    }
    (tmp_path / "cap.pkl").write_bytes(pickle.dumps(capacity))
    (tmp_path / "beh.pkl").write_bytes(pickle.dumps(behaviour))
    fleet = tmp_path / "fleet.h5"
    args = ["--capacity", str(tmp_path / "cap.pkl"), "--behaviour", str(tmp_path / "beh.pkl")]
    assert mpifl("fleet", "import", *args, "--output", str(fleet)).returncode == 0
    proc = mpifl(
        "run", str(small_job), "--set", f"fleet.trace='{fleet}'",
        "--set", "emulation.availability='trace'", "--set", "round.deadline=inf",
        "--set", "round.cohort=20", "--set", "run.rounds=4", ranks=2,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with h5py.File(tmp_path / "out.h5") as f:
        part, rounds = f["participation"][:], f["rounds"][:]
    assert rounds["virtual_time"][-1] > 0
    first = part[part["round"] == 1]
    odd = first["client"] % 2 == 1
    # at t = 0 all are online; odd clients go offline at 1.5 s, before they finish
    finish = first["compute_time"] + first["comm_time"]
    assert np.all(finish[odd] > 1.5)
    assert np.all(first["status"][odd] == Status.DROPPED)
    assert np.all(first["status"][~odd] == Status.TRAINED)
    for t in range(1, 4):  # later rounds start at 5-16 s: odd clients are offline then
        start = rounds["virtual_time"][t - 1]
        assert 1.5 < start < 30.0
        mine = part[part["round"] == t + 1]
        odd = mine["client"] % 2 == 1
        assert np.all(mine["status"][odd] == Status.UNAVAILABLE)
        assert np.all(mine["status"][~odd] == Status.TRAINED)


@pytest.mark.mpi
def test_diurnal_and_overcommit_run(small_job, tmp_path):
    proc = mpifl(
        "run", str(small_job), "--set", "emulation.availability='diurnal'",
        "--set", "emulation.diurnal_period=20.0", "--set", "emulation.slot=1.0",
        "--set", "round.overcommit=1.5", "--set", "round.cohort=8",
        "--set", "round.deadline=inf", "--set", "run.rounds=6", ranks=2,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with h5py.File(tmp_path / "out.h5") as f:
        rounds = f["rounds"][:]
    assert np.all(rounds["sampled"] == 12)
    assert np.all(rounds["trained"] <= 8)
    assert rounds["unavailable"].sum() > 0
    ready = rounds["trained"] + rounds["surplus"]
    assert np.all(rounds["surplus"] == np.maximum(ready - 8, 0))


def test_fine_tuning_leaves_out_clients_that_cannot_hold_the_model(small_job, tmp_path):
    # the microcontrollers cannot train the CNN: fine-tuned FedAvg scores them with the
    # global model, as plain FedAvg does, and fine-tunes everyone else
    plain, tuned = tmp_path / "p.h5", tmp_path / "t.h5"
    tiny = ("fleet.classes.mcu.memory=1024", "run.eval_clients=true", *LABEL_SKEW)
    run_here(small_job, plain, *tiny)
    run_here(small_job, tuned, *tiny, "algorithm.finetune_epochs=3")
    p, t = eval_table(plain)["rows"], eval_table(tuned)["rows"]
    assert last(p, "clients/mean/mcu")["accuracy"] == last(t, "clients/mean/mcu")["accuracy"]
    assert last(p, "clients/mean/rpi")["accuracy"] != last(t, "clients/mean/rpi")["accuracy"]
