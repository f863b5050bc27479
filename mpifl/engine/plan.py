"""The round plan: who is sampled, available, feasible, on time, and which rank trains whom.

Every rank computes the same plan from (seed, round) without communicating.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from mpifl.fleet.profiles import Fleet
from mpifl.results.schema import PARTICIPATION_DTYPE, Status
from mpifl.streams import Purpose, generator, uniform


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


def sample_cohort(seed: int, round_: int, n_clients: int, cohort: int) -> np.ndarray:
    """Client ids sampled uniformly without replacement, sorted."""
    rng = generator(seed, Purpose.SAMPLE, round_)
    return np.sort(rng.choice(n_clients, size=cohort, replace=False))


def plan_round(
    round_: int,
    seed: int,
    fleet: Fleet,
    n_train: np.ndarray,
    workload_of: Callable[[np.ndarray], Workload],
    rnd: SimpleNamespace,
    availability: str,
    n_ranks: int,
) -> RoundPlan:
    """Plan round `round_`: sample, check availability, memory and deadline, balance ranks."""
    ids = sample_cohort(seed, round_, len(fleet), rnd.cohort)
    prof = fleet.profiles[ids]
    work: Workload = workload_of(ids)
    rows = np.zeros(len(ids), dtype=PARTICIPATION_DTYPE)
    rows["round"], rows["client"], rows["device_class"] = round_, ids, prof["device_class"]
    rows["samples"], rows["memory"] = n_train[ids], prof["memory"]
    rows["flops"], rows["footprint"] = work.train_flops, work.footprint
    rows["bytes_down"], rows["bytes_up"] = work.bytes_down, work.bytes_up
    rows["width"], rows["prune"], rows["family"] = work.width, work.prune, work.family
    rows["loss"] = rows["accuracy"] = np.nan
    rows["compute_time"] = work.train_flops / prof["flops"]
    rows["comm_time"] = (
        2 * prof["latency"].astype(np.float64)
        + 8.0 * work.bytes_down / prof["downlink"]
        + 8.0 * work.bytes_up / prof["uplink"]
    )
    online = (
        np.ones(len(ids), dtype=bool)
        if availability == "always"
        else uniform(seed, Purpose.AVAILABILITY, round_, ids) < prof["availability"]
    )
    fits = work.footprint <= prof["memory"]
    finish = rows["compute_time"] + rows["comm_time"]
    on_time = finish <= rnd.deadline
    status = np.full(len(ids), Status.TRAINED, dtype=np.uint8)
    status[~on_time] = Status.LATE
    status[~fits] = Status.INFEASIBLE
    status[~online] = Status.UNAVAILABLE
    rows["status"] = status
    # Nothing is sent to an offline or infeasible client; a late upload never counts.
    idle = (status == Status.UNAVAILABLE) | (status == Status.INFEASIBLE)
    rows["bytes_down"][idle] = 0
    rows["bytes_up"][idle | (status == Status.LATE)] = 0
    rows["rank"] = assign_ranks(np.where(status == Status.TRAINED, work.train_flops, -1), n_ranks)
    trained = status == Status.TRAINED
    if np.any(status == Status.LATE):
        duration = float(rnd.deadline)
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
