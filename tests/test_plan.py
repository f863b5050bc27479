"""Round planning: statuses, virtual times, rank balancing."""

from __future__ import annotations

import numpy as np
import pytest

from mpifl.config.sections import RoundConfig
from mpifl.engine.plan import Planner, assign_ranks, sample_cohort
from mpifl.fleet.availability import Always, Bernoulli, Diurnal, Intervals, TraceIntervals
from mpifl.fleet.devices import CATALOGUE
from mpifl.fleet.profiles import generate_fleet
from mpifl.kit import Workload
from mpifl.results.schema import PARTICIPATION_DTYPE, Status
from mpifl.streams import Purpose, uniform

FLEET = generate_fleet(200, CATALOGUE, 0.3, seed=0)
N_TRAIN = np.full(200, 20)
PROBABILITY = FLEET.profiles["availability"].astype(np.float64)


def workload(footprint=100_000, flops_per_sample=1e6, nbytes=40_000):
    def of(ids, round_):
        n = len(ids)
        return Workload(
            footprint=np.full(n, footprint, np.int64),
            train_flops=N_TRAIN[ids] * flops_per_sample,
            bytes_down=np.full(n, nbytes, np.int64),
            bytes_up=np.full(n, nbytes, np.int64),
            width=np.ones(n, np.float32),
            prune=np.zeros(n, np.float32),
            variant=np.zeros(n, np.int16),
        )

    return of


def plan(cohort=100, deadline=np.inf, availability=None, ranks=2, overcommit=1.0, t0=0.0,
         partial=False, epochs=1, batch_size=32, **work):  # fmt: skip
    rnd = RoundConfig(
        cohort=cohort, deadline=deadline, overcommit=overcommit, interval=0.0, partial_work=partial
    )
    planner = Planner(0, FLEET, N_TRAIN, rnd, availability or Always(), ranks, epochs=epochs,
                      batch_size=batch_size)  # fmt: skip
    return planner.plan(0, t0, workload(**work))


def test_cohort_sampling_is_keyed_by_round():
    a, b = sample_cohort(0, 1, 1000, 50), sample_cohort(0, 1, 1000, 50)
    assert np.array_equal(a, b) and len(np.unique(a)) == 50
    assert not np.array_equal(a, sample_cohort(0, 2, 1000, 50))


def test_infeasible_when_footprint_exceeds_memory():
    p = plan(footprint=300 * 1024)
    rows = p.rows
    too_small = rows["memory"] < 300 * 1024
    assert too_small.any()
    assert np.all(rows["status"][too_small] == Status.INFEASIBLE)
    assert np.all(rows["rank"][too_small] == -1)
    assert np.all(rows["bytes_down"][too_small] == 0)


def test_late_clients_and_round_duration():
    free = plan()
    finish = free.rows["compute_time"] + free.rows["comm_time"]
    deadline = float(np.median(finish))
    p = plan(deadline=deadline)
    late = p.rows["status"] == Status.LATE
    assert np.array_equal(late, finish > deadline)
    assert p.duration == deadline
    assert free.duration == finish.max()
    assert np.all(p.rows["bytes_up"][late] == 0) and np.all(p.rows["bytes_down"][late] > 0)


def test_virtual_times_follow_the_profiles():
    rows = plan(flops_per_sample=1e6, nbytes=40_000).rows
    prof = FLEET.profiles[rows["client"]]
    assert np.allclose(rows["compute_time"], 20 * 1e6 / prof["flops"])
    expected = 2 * prof["latency"] + 8 * 40_000 / prof["downlink"] + 8 * 40_000 / prof["uplink"]
    assert np.allclose(rows["comm_time"], expected, rtol=1e-6)


def test_bernoulli_availability_matches_probabilities():
    p = plan(cohort=200, availability=Bernoulli(PROBABILITY, 0), footprint=1)
    online = p.rows["status"] != Status.UNAVAILABLE
    expected = FLEET.profiles["availability"][p.rows["client"]].mean()
    assert abs(online.mean() - expected) < 0.12


def test_plan_does_not_depend_on_rank_count_except_ranks():
    a, b = plan(ranks=1).rows, plan(ranks=4).rows
    for field in a.dtype.names:
        if field != "rank":
            assert a[field].tobytes() == b[field].tobytes(), field
    assert set(a["rank"]) == {0} and set(b["rank"]) == {0, 1, 2, 3}


def test_greedy_balancing():
    cost = np.array([5.0, 4.0, 3.0, 3.0, 3.0, -1.0])
    ranks = assign_ranks(cost, 2)
    assert ranks[-1] == -1
    # longest first, each to the least loaded rank (ties to the lower rank)
    assert ranks.tolist() == [0, 1, 1, 0, 1, -1]
    loads = [cost[ranks == r].sum() for r in range(2)]
    assert max(loads) <= 4 / 3 * cost[cost > 0].sum() / 2  # LPT's guarantee


def test_overcommit_keeps_the_first_to_finish():
    p = plan(cohort=40, overcommit=1.5)
    rows = p.rows
    assert len(rows) == 60
    trained = rows["status"] == Status.TRAINED
    surplus = rows["status"] == Status.SURPLUS
    assert trained.sum() == 40 and surplus.sum() == 20
    finish = rows["compute_time"] + rows["comm_time"]
    assert finish[trained].max() <= finish[surplus].min()
    assert p.duration == finish[trained].max()  # the round closes at the 40th arrival
    assert np.all(rows["bytes_up"][surplus] == 0) and np.all(rows["rank"][surplus] == -1)


def test_overcommit_short_of_cohort_waits_for_the_deadline():
    free = plan(cohort=60)
    finish = free.rows["compute_time"] + free.rows["comm_time"]
    deadline = float(np.quantile(finish, 0.3))  # most clients are late
    p = plan(cohort=40, overcommit=1.5, deadline=deadline)
    assert (p.rows["status"] == Status.TRAINED).sum() < 40
    assert p.duration == deadline


def test_trace_intervals_and_dropouts():
    # client k online in [100 k, 100 k + 50) only, repeating every 1000 s
    n = len(FLEET)
    offsets = np.arange(n + 1)
    starts = (np.arange(n) % 10) * 100.0
    model = TraceIntervals(Intervals(offsets, starts, starts + 50.0), np.full(n, 1000.0))
    ids = np.arange(20)
    online = model.online(ids, 0, t0=1210.0)  # 1210 mod 1000 = 210: clients with k%10 == 2
    assert np.array_equal(np.flatnonzero(online), [2, 12])
    stays = model.stays_online(ids, 1210.0, np.full(20, 30.0))
    assert np.array_equal(stays, online)  # 240 < 250
    assert not model.stays_online(ids, 1210.0, np.full(20, 45.0))[2]  # 255 > 250
    p = plan(availability=model, t0=1210.0, cohort=200)
    dropped = p.rows["status"] == Status.DROPPED
    finish = p.rows["compute_time"] + p.rows["comm_time"]
    assert np.all(finish[dropped] > 40.0 - 1e-9)


def test_diurnal_availability_follows_the_cycle():
    ids = np.arange(len(FLEET))
    model = Diurnal(np.full(len(FLEET), 0.5), 1.0, 86400.0, 900.0, seed=0)
    p = model.probability(ids, 0.0)
    assert p.min() >= 0 and p.max() <= 1 and p.std() > 0.2  # phases spread the clients
    # a client's probability peaks (at 2 x 0.5 = 1) when sin(2 pi (t / P + phase)) = 1
    phase = uniform(0, Purpose.PHASE, -1, ids[:1])[0]
    peak_time = 86400.0 * ((0.25 - phase) % 1.0)
    assert model.probability(ids[:1], peak_time)[0] == pytest.approx(1.0)
    assert model.probability(ids[:1], peak_time + 43200.0)[0] == pytest.approx(0.0, abs=1e-9)
    over_day = np.mean([model.online(ids, 0, t).mean() for t in np.arange(0, 86400, 3600)])
    assert abs(over_day - 0.5) < 0.08


def test_partial_work_trains_the_steps_that_fit_the_deadline():
    work = dict(flops_per_sample=5e7, nbytes=4000, epochs=3, batch_size=6, deadline=2.0)
    late = plan(**work).rows
    cut = plan(partial=True, **work).rows
    was_late = late["status"] == Status.LATE
    partial = cut["status"] == Status.PARTIAL
    assert was_late.sum() > 5 and partial.any() and not (cut["status"] == Status.LATE).all()
    assert np.array_equal(partial | (cut["status"] == Status.LATE), was_late)
    on_time = ~was_late
    for column in ("status", "steps", "flops", "compute_time", "bytes_up", "arrival_time"):
        assert np.array_equal(cut[column][on_time], late[column][on_time])  # unchanged
    p, full = cut[partial], late[partial]
    per_epoch = -(-p["samples"] // 6)
    assert np.all(full["steps"] == 3 * per_epoch) and np.all(p["steps"] < full["steps"])
    assert np.all(p["steps"] >= 1) and np.all(p["bytes_up"] == 4000)  # late: 0
    assert np.all(p["compute_time"] + p["comm_time"] <= 2.0)
    assert np.all(p["rank"] >= 0) and np.all(p["applied"] == 1)

    def samples(steps, n):  # the samples the first `steps` steps take
        done = steps // -(-n // 6)
        return done * n + (steps - done * -(-n // 6)) * 6

    speed = full["compute_time"] / (3 * p["samples"])  # seconds per sample
    assert np.allclose(p["compute_time"], samples(p["steps"], p["samples"]) * speed)
    one_more = samples(p["steps"] + 1, p["samples"]) * speed + p["comm_time"]
    assert np.all(one_more > 2.0)  # the next step would not fit
    assert np.allclose(p["flops"] / full["flops"], p["compute_time"] / full["compute_time"])
    slow = plan(partial=True, **(work | {"nbytes": 40_000})).rows  # links take ~2 s
    still_late = slow[slow["status"] == Status.LATE]
    assert len(still_late) and np.all(still_late["steps"] == 3 * -(-still_late["samples"] // 6))
    first = np.minimum(6, still_late["samples"]) / (3 * still_late["samples"])
    assert np.all(still_late["compute_time"] * first + still_late["comm_time"] > 2.0)


def test_a_deadline_met_exactly_still_takes_the_steps_that_fit():
    """Rounding made compute(k) + comm exceed the deadline by a float's width: the client
    was late though k - 1 steps (and maybe k) fit (found by review)."""
    from mpifl.engine.plan import partial_work

    rnd = RoundConfig(
        cohort=1, deadline=870.6658762446635, overcommit=1.0, interval=0.0, partial_work=True
    )
    planner = Planner(0, FLEET, np.array([71]), rnd, Always(), 1, epochs=3, batch_size=39)
    rows = np.zeros(1, PARTICIPATION_DTYPE)
    rows["samples"], rows["status"], rows["flops"] = 71, Status.TRAINED, 1e9
    rows["compute_time"], rows["comm_time"] = 980.011157113702, 37.88644226541457
    finish = rows["compute_time"] + rows["comm_time"]
    partial_work(planner, rows, finish, np.array([10]), 0.0)
    assert rows["status"][0] == Status.PARTIAL and rows["steps"][0] >= 4
    assert finish[0] <= rnd.deadline
