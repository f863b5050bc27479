"""Round planning: statuses, virtual times, rank balancing."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from mpifl.engine.plan import Workload, assign_ranks, plan_round, sample_cohort
from mpifl.fleet.devices import CATALOGUE
from mpifl.fleet.profiles import generate_fleet
from mpifl.results.schema import Status

FLEET = generate_fleet(200, CATALOGUE, 0.3, seed=0)
N_TRAIN = np.full(200, 20)


def workload(footprint=100_000, flops_per_sample=1e6, nbytes=40_000):
    def of(ids):
        n = len(ids)
        return Workload(
            footprint=np.full(n, footprint, np.int64),
            train_flops=N_TRAIN[ids] * flops_per_sample,
            bytes_down=np.full(n, nbytes, np.int64),
            bytes_up=np.full(n, nbytes, np.int64),
            width=np.ones(n, np.float32),
            prune=np.zeros(n, np.float32),
            family=np.zeros(n, np.int16),
        )

    return of


def plan(cohort=100, deadline=np.inf, availability="always", ranks=2, **work):
    rnd = SimpleNamespace(cohort=cohort, deadline=deadline)
    return plan_round(0, 0, FLEET, N_TRAIN, workload(**work), rnd, availability, ranks)


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
    p = plan(cohort=200, availability="bernoulli", footprint=1)
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
