"""Asynchronous aggregation (fedbuff, fedasync): the event schedule, what it records, its
equivalence with synchronous FedAvg, rank-count independence and resume."""

from __future__ import annotations

import signal
import subprocess
import sys

import h5py
import numpy as np
import psutil
import pytest

from mpifl.comm import Comm
from mpifl.engine.assemble import assemble
from mpifl.engine.asynchronous import build_schedule
from mpifl.errors import ConfigError
from mpifl.jobs import validate_job
from mpifl.kit.staleness import staleness_weight
from mpifl.results import read_run
from mpifl.results.schema import Status
from tests.conftest import ROOT, assert_same_results, env, mpiexec, mpifl, run_here, set_args
from tests.test_resume_mpi import wait_for_rounds

JOB = """
[run]
name = "async"
rounds = 6
output = "{output}"

[data]
name = "digits"

[fleet]
clients = 40

[model]
arch = "mlp"
hidden = [32]

[train]
epochs = 1
batch_size = 8

[round]
cohort = 8

[algorithm]
name = "{method}"
{algorithm}

[asynchronous]
concurrency = {concurrency}
dispatch = "{dispatch}"
"""


def job_text(tmp_path, method="fedbuff", algorithm="buffer = 4", concurrency=8,
             dispatch="arrival") -> str:  # fmt: skip
    return JOB.format(output=tmp_path / "unused.h5", method=method, algorithm=algorithm,
                      concurrency=concurrency, dispatch=dispatch)  # fmt: skip


def write_job(tmp_path, **kw) -> str:
    path = tmp_path / "job.toml"
    path.write_text(job_text(tmp_path, **kw))
    return str(path)


def schedule_of(tmp_path, rounds: int = 30, clients: int = 40, **kw):
    import tomllib

    raw = tomllib.loads(job_text(tmp_path, **kw))
    raw["run"]["rounds"] = rounds
    raw["fleet"]["clients"] = clients
    raw["round"]["cohort"] = min(raw["round"]["cohort"], clients)
    cfg = validate_job(raw)
    parts = assemble(cfg, Comm(), tmp_path / "x.h5")
    return build_schedule(cfg, parts.method, parts.planner), parts.method


def test_staleness_weights():
    tau = np.array([0, 1, 3, 8])
    assert staleness_weight("constant", 0.5, 4, tau).tolist() == [1, 1, 1, 1]
    assert np.allclose(staleness_weight("polynomial", 0.5, 4, tau), (1 + tau) ** -0.5)
    assert np.allclose(staleness_weight("hinge", 2, 2, tau), [1, 1, 1 / 3, 1 / 13])
    with np.errstate(all="raise"):  # (a run with a staleness of b - 1/a warned)
        assert staleness_weight("hinge", 0.5, 4, np.arange(8.0)).tolist() == [1] * 5 + [
            1 / 1.5,
            1 / 2,
            1 / 2.5,
        ]


@pytest.mark.parametrize("dispatch", ["arrival", "step"])
def test_the_schedule_keeps_its_promises(tmp_path, dispatch):
    """At most `concurrency` clients in flight; a step per K arrivals, in arrival order;
    staleness = steps between a client's model and the step applying its update."""
    schedule, method = schedule_of(tmp_path, dispatch=dispatch)
    rows, steps = schedule.rows, schedule.step_time
    assert len(steps) == 30 and np.all(np.diff(steps) >= 0)
    started = ~np.isnan(rows["arrival_time"])
    starts = [(t, 1) for t in rows["dispatch_time"][started]]
    ends = [(t, -1) for t in rows["arrival_time"][started]]
    events = sorted(starts + ends)  # at equal times an arrival frees its slot first
    assert max(np.cumsum([e[1] for e in events])) <= 8
    applied = rows[rows["applied"] > 0]
    assert np.all(np.bincount(applied["applied"])[1:] == method.buffer)
    for step, t in enumerate(steps):  # the K updates of a step arrived since the last one
        mine = applied["arrival_time"][applied["applied"] == step + 1]
        assert mine.max() == t and (step == 0 or mine.min() >= steps[step - 1])
    assert np.all(applied["staleness"] == applied["applied"] - applied["round"])
    assert np.all(applied["staleness"] >= 0) and applied["staleness"].max() > 0
    expected = staleness_weight("polynomial", 0.5, 4.0, applied["staleness"])
    assert np.allclose(applied["update_weight"], expected)
    assert np.all(applied["dispatch_time"] <= applied["arrival_time"])
    if dispatch == "step":  # new clients start only when a step publishes a model
        later = rows["dispatch_time"][rows["round"] > 1]
        assert np.isin(later, steps).all()
    never = rows[rows["applied"] == 0]
    assert set(never["status"]) <= {Status.UNAVAILABLE, Status.DROPPED, Status.SURPLUS}
    ran = rows[~np.isnan(rows["arrival_time"])]  # a client trains a model version once
    assert len(np.unique(ran[["round", "client"]])) == len(ran)


def test_a_small_fleet_never_trains_a_client_twice_on_one_model(tmp_path):
    """With a buffer of 8 from 10 clients, refills must skip the clients that already
    trained the current model: the same update twice would count twice."""
    schedule, _ = schedule_of(tmp_path, clients=10, concurrency=9, algorithm="buffer = 8")
    ran = schedule.rows[~np.isnan(schedule.rows["arrival_time"])]
    assert (ran["round"] > 2).any()
    assert len(np.unique(ran[["round", "client"]])) == len(ran)


def test_a_fleet_that_never_delivers_is_a_config_error(tmp_path, monkeypatch):
    """Every client goes offline before it finishes: no step can ever happen."""
    from mpifl.fleet.availability import Bernoulli

    monkeypatch.setattr(Bernoulli, "stays_online", lambda self, ids, t0, finish: ids < 0)
    with pytest.raises(ConfigError, match="no update reached the server"):
        schedule_of(tmp_path, rounds=3)


def test_settings_without_meaning_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="asynchronous.concurrency"):
        schedule_of(tmp_path, concurrency=2)  # fewer in flight than a buffer needs
    with pytest.raises(ConfigError, match=r"\[asynchronous\] is read only"):
        schedule_of(tmp_path, method="fedavg", algorithm="")
    import tomllib

    raw = tomllib.loads(job_text(tmp_path))
    raw["round"]["deadline"] = 3.0
    cfg = validate_job(raw)
    parts = assemble(cfg, Comm(), tmp_path / "x.h5")
    with pytest.raises(ConfigError, match="round.deadline"):
        build_schedule(cfg, parts.method, parts.planner)


def final_state(path) -> dict[str, bytes]:
    with h5py.File(path) as f:
        assert f.attrs["status"] == "complete"
        out = {}
        f["final_state"].visititems(
            lambda name, obj: out.__setitem__(name, obj[()].tobytes())
            if isinstance(obj, h5py.Dataset) else None
        )  # fmt: skip
        rounds = f["rounds"][()]
        out["rounds"] = rounds["virtual_time"].tobytes() + rounds["test_loss"].tobytes()
        return out


def test_with_concurrency_and_buffer_equal_to_the_cohort_it_is_fedavg(tmp_path):
    """Concurrency = K = cohort, constant weights, new clients at each step, everyone
    available: the asynchronous path reproduces synchronous FedAvg bit for bit."""
    text = job_text(tmp_path, method="fedavg", algorithm="")
    (tmp_path / "sync.toml").write_text(text.split("[asynchronous]")[0])
    asyn = tmp_path / "async.toml"
    asyn.write_text(job_text(tmp_path, algorithm='buffer = 8\nstaleness = "constant"',
                             dispatch="step"))  # fmt: skip
    outs = []
    for job in (tmp_path / "sync.toml", asyn):
        out = tmp_path / f"{job.stem}.h5"
        run_here(job, out, "emulation.availability='always'")  # (ranks: another test)
        outs.append(out)
    assert final_state(outs[0]) == final_state(outs[1])
    part = read_run(outs[1]).tables["participation"]
    trained = part[part["status"] == "trained"]
    assert (trained["staleness"] == 0).all() and (trained["applied"] == trained["round"]).all()


@pytest.mark.parametrize(
    ("method", "algorithm"),
    [("fedbuff", 'buffer = 4\nstaleness = "hinge"'), ("fedasync", "mixing = 0.5")],
)
def test_the_same_run_on_1_2_and_4_ranks(tmp_path, method, algorithm):
    job = write_job(tmp_path, method=method, algorithm=algorithm)
    states = []
    run_here(job, tmp_path / "n0.h5", "train.group=3")
    for ranks in (0, 2, 4):
        out = tmp_path / f"n{ranks}.h5"
        if ranks:
            proc = mpifl("run", job, "--output", str(out), *set_args("train.group=3"), ranks=ranks)
            assert proc.returncode == 0, proc.stderr
        states.append(final_state(out))
        assert_same_results(tmp_path / "n0.h5", out)  # the batteries' charge and energy too
    assert states[0] == states[1] == states[2]
    charge = read_run(out).tables["participation"]["charge"]
    assert charge.notna().any() and charge.nunique() > 1


def test_sigterm_then_resume_on_another_rank_count_is_byte_identical(tmp_path):
    """Updates in flight at the checkpoint (summed over ranks) are applied after resume."""
    job = write_job(tmp_path)
    sets = set_args("run.rounds=10", "emulation.mode='throttled'", "emulation.time_scale=3")
    reference = tmp_path / "ref.h5"
    proc = mpifl("run", job, "--output", str(reference), *sets, ranks=2)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "run.h5"
    cmd = [mpiexec(), "-n", "2", sys.executable, "-m", "mpifl", "run", job, "--output", str(out)]
    run = subprocess.Popen([*cmd, *sets], cwd=ROOT, env=env(), stderr=subprocess.PIPE,
                           text=True, start_new_session=True)  # fmt: skip
    wait_for_rounds(out, 3, run)
    for p in psutil.Process(run.pid).children(recursive=True):
        if "mpifl" in " ".join(p.cmdline()):
            p.send_signal(signal.SIGTERM)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 3, stderr
    with h5py.File(out) as f:
        assert f.attrs["status"] == "interrupted" and f.attrs["next_round"] < 11
    proc = mpifl("run", job, "--output", str(out), "--resume", *sets, ranks=1)
    assert proc.returncode == 0, proc.stderr
    assert final_state(out) == final_state(reference)
    part = read_run(out).tables["participation"]
    assert (part["staleness"] > 0).any()  # stale updates were in flight across rounds


def test_the_fedbuff_demo_smoke_run(tmp_path):
    """analysis/async_demo.py (the FedBuff-against-FedAvg figures in docs/methods.md)."""
    cmd = [sys.executable, "analysis/async_demo.py", "--smoke", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for text in ("accuracy by virtual time", "accuracy by bytes", "fedbuff: 3 server steps"):
        assert text in proc.stdout, proc.stdout
