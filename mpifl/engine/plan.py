"""The round plan: who is sampled, available, feasible, on time, and which rank trains whom.

Every rank computes the same plan from (seed, round) without communicating.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mpifl.config.sections import RoundConfig
from mpifl.fleet.availability import Availability
from mpifl.fleet.profiles import Fleet
from mpifl.kit.workload import RoundPlan, Workload, virtual_times
from mpifl.results.schema import PARTICIPATION_DTYPE, Status
from mpifl.streams import Purpose, generator

WorkloadOf = Callable[[np.ndarray, int], Workload]  # a method's `workload`


def sample_cohort(seed: int, round_: int, n_clients: int, cohort: int) -> np.ndarray:
    """Client ids sampled uniformly without replacement, sorted."""
    rng = generator(seed, Purpose.SAMPLE, round_)
    return np.sort(rng.choice(n_clients, size=cohort, replace=False))


@dataclass(frozen=True)
class Planner:
    """What every round's plan depends on besides the round, its start time and the
    method's workload: the fleet, the data's client sizes, the [round] settings, the
    availability model and the rank count. `check_footprint` refuses clients whose
    analytic footprint exceeds their memory (off when memory is measured instead);
    `pinned` sends client k to its home rank k mod R (methods that keep client state);
    `group_size` > 1 forms batched groups of trained clients (the method trains each as
    one computation), the same for any rank count, and gives ranks whole groups (pinned:
    groups within each home rank; a client's batched result does not depend on its
    group, which tests/test_batched.py checks)."""

    seed: int
    fleet: Fleet
    n_train: np.ndarray
    settings: RoundConfig
    availability: Availability
    n_ranks: int
    check_footprint: bool = True
    pinned: bool = False
    group_size: int = 1
    speedup: np.ndarray | None = None  # per client id, bf16 speed over fp32 (None: fp32)

    def plan(self, round_: int, t0: float, workload_of: WorkloadOf) -> RoundPlan:
        """Round `round_`'s plan, starting at virtual time t0 (see `plan_round`)."""
        return plan_round(self, round_, t0, workload_of)


def plan_round(planner: Planner, round_: int, t0: float, workload_of: WorkloadOf) -> RoundPlan:
    """Plan round `round_` starting at virtual time t0.

    Sample ceil(cohort x overcommit) clients; leave out the offline, the infeasible
    (footprint over memory budget), those that go offline before they finish, and those
    that would miss the deadline; with over-commitment keep the first `cohort` to finish.
    Balance the rest over ranks (or, `pinned`, send client k to its home rank k mod R,
    for methods that keep client state); with `group_size` > 1, balance whole groups.
    """
    fleet, rnd = planner.fleet, planner.settings
    n_sample = min(len(fleet), math.ceil(rnd.cohort * rnd.overcommit))
    ids = sample_cohort(planner.seed, round_, len(fleet), n_sample)
    rows, finish = dispatch_rows(planner, ids, round_, workload_of(ids, round_), t0, round_)
    status = rows["status"]  # a view: changes land in the rows
    status[(status == Status.TRAINED) & (finish > rnd.deadline)] = Status.LATE
    ready = np.flatnonzero(status == Status.TRAINED)
    if len(ready) > rnd.cohort:  # over-commitment: the first `cohort` to finish count
        order = ready[np.lexsort((ids[ready], finish[ready]))]
        status[order[rnd.cohort :]] = Status.SURPLUS
    rows["bytes_up"][(status == Status.LATE) | (status == Status.SURPLUS)] = 0  # never count
    trained = status == Status.TRAINED
    rows["applied"] = np.where(trained, round_ + 1, 0)
    rows["staleness"] = np.where(trained, 0, -1)
    rows["update_weight"] = trained
    place(planner, rows)
    waited = np.any((status == Status.LATE) | (status == Status.DROPPED))
    if waited and math.isfinite(rnd.deadline) and trained.sum() < rnd.cohort:
        duration = float(rnd.deadline)  # the server waited for clients that never came
    else:
        duration = float(finish[trained].max()) if trained.any() else 0.0
    return RoundPlan(round_, rows, duration)


def dispatch_rows(
    planner: Planner, ids: np.ndarray, round_: int, work: Workload, t0: float, key: int
) -> tuple[np.ndarray, np.ndarray]:
    """Participation rows of clients `ids` handed the model of round `round_` at virtual
    time t0 (`work` aligned with `ids`; `key` keys the availability draw), and each one's
    compute + communication time. Status: unavailable (offline at t0), infeasible
    (footprint over memory budget, if checked), dropped (offline before it finishes),
    else trained. Nothing is sent to a client that never starts, and a dropped one sends
    nothing back. Not yet set: `applied`, `staleness`, `update_weight`, `rank`."""
    prof = planner.fleet.profiles[ids]
    rows = np.zeros(len(ids), dtype=PARTICIPATION_DTYPE)
    rows["round"], rows["client"], rows["device_class"] = round_ + 1, ids, prof["device_class"]
    rows["samples"], rows["memory"] = planner.n_train[ids], prof["memory"]
    rows["flops"], rows["footprint"] = work.train_flops, work.footprint
    rows["bytes_down"], rows["bytes_up"] = work.bytes_down, work.bytes_up
    rows["width"], rows["prune"], rows["variant"] = work.width, work.prune, work.variant
    rows["loss"] = rows["accuracy"] = np.nan
    rows["measured_memory"] = -1
    rows["group"] = -1
    speedup = None if planner.speedup is None else planner.speedup[ids]
    rows["compute_time"], rows["comm_time"] = virtual_times(
        prof, work.train_flops, work.bytes_down, work.bytes_up, speedup
    )
    finish = rows["compute_time"] + rows["comm_time"]
    online = planner.availability.online(ids, key, t0)
    stays = planner.availability.stays_online(ids, t0, finish)
    fits = work.footprint <= prof["memory"] if planner.check_footprint else np.ones(len(ids), bool)
    status = np.full(len(ids), Status.TRAINED, dtype=np.uint8)
    status[~stays] = Status.DROPPED
    status[~fits] = Status.INFEASIBLE
    status[~online] = Status.UNAVAILABLE
    rows["status"] = status
    idle = (status == Status.UNAVAILABLE) | (status == Status.INFEASIBLE)
    rows["bytes_down"][idle] = 0
    rows["compute_time"][idle] = rows["comm_time"][idle] = 0.0  # they never start
    rows["bytes_up"][idle | (status == Status.DROPPED)] = 0
    rows["dispatch_time"] = t0
    rows["arrival_time"] = np.where(idle, np.nan, t0 + finish)
    return rows, finish


def place(planner: Planner, rows: np.ndarray) -> None:
    """Set the `rank` (and with batched groups the `group`) of the rows whose status is
    trained: balanced by FLOPs over the ranks, or (`pinned`) client k on its home rank
    k mod R; with `group_size` > 1, whole groups. The same for any rank count but the
    ranks themselves."""
    trained = rows["status"] == Status.TRAINED
    if planner.pinned:  # groups, if any, of one home rank each
        rows["rank"] = np.where(trained, rows["client"] % planner.n_ranks, -1)
        if planner.group_size > 1:
            key = np.where(trained, rows["rank"].astype(np.int64) * 2**16 + rows["variant"], -1)
            rows["group"] = form_groups(key, rows["samples"], planner.group_size)
    elif planner.group_size > 1:
        variant = np.where(trained, rows["variant"], -1)
        rows["group"] = form_groups(variant, rows["samples"], planner.group_size)
        costs = np.bincount(rows["group"][trained], rows["flops"][trained])
        group_rank = np.append(assign_ranks(costs, planner.n_ranks), -1)  # [-1]: no group
        rows["rank"] = group_rank[rows["group"]]
    else:
        rows["rank"] = assign_ranks(np.where(trained, rows["flops"], -1), planner.n_ranks)


SPREAD = 8  # groups a variant's clients are cut into, at least, to balance the ranks
SMALLEST_GROUP = 8  # ... unless that makes groups smaller than this


def form_groups(variant: np.ndarray, samples: np.ndarray, size: int) -> np.ndarray:
    """Group ids for rows in client order: the rows of one variant (variant < 0: none),
    ordered by sample count (then row), in consecutive groups of at most `size` and at
    least SPREAD groups (none below SMALLEST_GROUP clients) so that ranks get alike
    loads; variant by variant; -1 for rows in none. Nothing depends on the rank count."""
    group = np.full(len(variant), -1, dtype=np.int32)
    next_id = 0
    for v in np.unique(variant[variant >= 0]):
        members = np.flatnonzero(variant == v)
        members = members[np.argsort(samples[members], kind="stable")]
        cut = min(size, max(SMALLEST_GROUP, -(-len(members) // SPREAD)))
        group[members] = next_id + np.arange(len(members)) // cut
        next_id += -(-len(members) // cut)
    return group


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
