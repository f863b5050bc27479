"""The round plan: who is sampled, available, feasible, on time, and which rank trains whom.

Every rank computes the same plan from (seed, round) without communicating.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from mpifl.fleet.availability import Availability
from mpifl.fleet.profiles import Fleet
from mpifl.results.schema import PARTICIPATION_DTYPE, Status
from mpifl.streams import Purpose, generator


@dataclass
class Workload:
    """Per-client cost of a method's round work (arrays aligned with a client-id array)."""

    footprint: np.ndarray  # i8 bytes
    train_flops: np.ndarray  # f8 total training FLOPs this round
    bytes_down: np.ndarray  # i8
    bytes_up: np.ndarray  # i8
    width: np.ndarray  # f4
    prune: np.ndarray  # f4
    family: np.ndarray  # i2

    @classmethod
    def idle(cls, n: int) -> Workload:
        """n clients with nothing to train, hold or send."""
        zeros = np.zeros(n, dtype=np.int64)
        return cls(zeros, np.zeros(n), zeros, zeros, np.ones(n, np.float32),
                   np.zeros(n, np.float32), np.zeros(n, np.int16))  # fmt: skip


@dataclass
class RoundPlan:
    """One round's plan; `rows` holds a participation row per sampled client (by client id)."""

    round: int
    rows: np.ndarray
    duration: float

    def scheduled(self, rank: int) -> np.ndarray:
        """Positions in `rows` of the clients this rank trains."""
        return np.flatnonzero(self.rows["rank"] == rank)

    @property
    def total_samples(self) -> int:
        """Training samples of all scheduled clients (the aggregation weight scale)."""
        mask = self.rows["status"] == Status.TRAINED
        return int(self.rows["samples"][mask].sum())


def virtual_times(
    profiles: np.ndarray, train_flops: np.ndarray, bytes_down: np.ndarray, bytes_up: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(compute, comm) virtual seconds: FLOPs / speed; 2 x latency + bytes / bandwidth."""
    compute = train_flops / profiles["flops"]
    comm = (
        2 * profiles["latency"].astype(np.float64)
        + 8.0 * bytes_down / profiles["downlink"]
        + 8.0 * bytes_up / profiles["uplink"]
    )
    return compute, comm


def sample_cohort(seed: int, round_: int, n_clients: int, cohort: int) -> np.ndarray:
    """Client ids sampled uniformly without replacement, sorted."""
    rng = generator(seed, Purpose.SAMPLE, round_)
    return np.sort(rng.choice(n_clients, size=cohort, replace=False))


def plan_round(
    round_: int,
    t0: float,
    seed: int,
    fleet: Fleet,
    n_train: np.ndarray,
    workload_of: Callable[[np.ndarray, int], Workload],
    rnd: SimpleNamespace,
    availability: Availability,
    n_ranks: int,
    check_footprint: bool = True,
    pinned: bool = False,
) -> RoundPlan:
    """Plan round `round_` starting at virtual time t0.

    Sample ceil(cohort x overcommit) clients; leave out the offline, the infeasible
    (footprint over memory budget), those that go offline before they finish, and those
    that would miss the deadline; with over-commitment keep the first `cohort` to finish.
    Balance the rest over ranks (or, `pinned`, send client k to its home rank k mod R,
    for methods that keep client state).
    """
    n_sample = min(len(fleet), math.ceil(rnd.cohort * rnd.overcommit))
    ids = sample_cohort(seed, round_, len(fleet), n_sample)
    prof = fleet.profiles[ids]
    work: Workload = workload_of(ids, round_)
    rows = np.zeros(len(ids), dtype=PARTICIPATION_DTYPE)
    rows["round"], rows["client"], rows["device_class"] = round_ + 1, ids, prof["device_class"]
    rows["samples"], rows["memory"] = n_train[ids], prof["memory"]
    rows["flops"], rows["footprint"] = work.train_flops, work.footprint
    rows["bytes_down"], rows["bytes_up"] = work.bytes_down, work.bytes_up
    rows["width"], rows["prune"], rows["family"] = work.width, work.prune, work.family
    rows["loss"] = rows["accuracy"] = np.nan
    rows["measured_memory"] = -1
    rows["compute_time"], rows["comm_time"] = virtual_times(
        prof, work.train_flops, work.bytes_down, work.bytes_up
    )
    finish = rows["compute_time"] + rows["comm_time"]
    online = availability.online(ids, round_, t0)
    stays = availability.stays_online(ids, t0, finish)
    fits = work.footprint <= prof["memory"] if check_footprint else np.ones(len(ids), bool)
    status = np.full(len(ids), Status.TRAINED, dtype=np.uint8)
    status[finish > rnd.deadline] = Status.LATE
    status[~stays] = Status.DROPPED
    status[~fits] = Status.INFEASIBLE
    status[~online] = Status.UNAVAILABLE
    ready = np.flatnonzero(status == Status.TRAINED)
    if len(ready) > rnd.cohort:  # over-commitment: the first `cohort` to finish count
        order = ready[np.lexsort((ids[ready], finish[ready]))]
        status[order[rnd.cohort :]] = Status.SURPLUS
    rows["status"] = status
    # Nothing is sent to an offline or infeasible client; uploads that never count are not sent.
    idle = (status == Status.UNAVAILABLE) | (status == Status.INFEASIBLE)
    rows["bytes_down"][idle] = 0
    rows["compute_time"][idle] = rows["comm_time"][idle] = 0.0  # they never start
    cut = idle | (status == Status.LATE) | (status == Status.DROPPED) | (status == Status.SURPLUS)
    rows["bytes_up"][cut] = 0
    trained = status == Status.TRAINED
    if pinned:
        rows["rank"] = np.where(trained, ids % n_ranks, -1)
    else:
        rows["rank"] = assign_ranks(np.where(trained, work.train_flops, -1), n_ranks)
    waited = np.any((status == Status.LATE) | (status == Status.DROPPED))
    if waited and math.isfinite(rnd.deadline) and trained.sum() < rnd.cohort:
        duration = float(rnd.deadline)  # the server waited for clients that never came
    else:
        duration = float(finish[trained].max()) if trained.any() else 0.0
    return RoundPlan(round_, rows, duration)


def assign_ranks(cost: np.ndarray, n_ranks: int) -> np.ndarray:
    """Greedy longest-processing-time balancing; cost < 0 means not scheduled (rank -1)."""
    ranks = np.full(len(cost), -1, dtype=np.int16)
    order = sorted(np.flatnonzero(cost >= 0), key=lambda i: (-cost[i], i))
    loads = [(0.0, r) for r in range(n_ranks)]
    for i in order:
        load, r = heapq.heappop(loads)
        ranks[i] = r
        heapq.heappush(loads, (load + float(cost[i]), r))
    return ranks
