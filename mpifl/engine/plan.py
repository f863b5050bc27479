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
from mpifl.fleet.energy import FleetEnergy
from mpifl.fleet.profiles import Fleet
from mpifl.kit.workload import RoundPlan, Workload, virtual_times
from mpifl.results.schema import PARTICIPATION_DTYPE, Status, contributes
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
    group, which tests/test_batched.py checks). `epochs` and `batch_size` (train.*) give
    a client's local SGD steps. `energy` prices the work and holds the batteries, which
    the engine moves at each round's end (so a plan reads, never changes, them)."""

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
    epochs: int = 1
    batch_size: int = 32
    energy: FleetEnergy | None = None

    @property
    def sample_size(self) -> int:
        """Clients sampled per round: ceil(cohort x overcommit), at most the fleet."""
        return min(len(self.fleet), math.ceil(self.settings.cohort * self.settings.overcommit))

    def plan(
        self, round_: int, t0: float, workload_of: WorkloadOf, ids: np.ndarray | None = None
    ) -> RoundPlan:
        """Round `round_`'s plan, starting at virtual time t0 (see `plan_round`)."""
        return plan_round(self, round_, t0, workload_of, ids)


def plan_round(
    planner: Planner, round_: int, t0: float, workload_of: WorkloadOf, ids: np.ndarray | None
) -> RoundPlan:
    """Plan round `round_` starting at virtual time t0.

    Sample ceil(cohort x overcommit) clients (uniformly, or the sorted `ids` a
    selection strategy chose: engine.selection); leave out those with a low battery,
    the offline, the infeasible (footprint over memory budget), those that go
    offline before they finish, and those that would miss the deadline (with
    round.partial_work, those that cannot fit one local step before it: the others
    train the steps that fit, `partial_work`); with over-commitment keep the first
    `cohort` to finish. A client whose battery cannot pay for its work runs flat
    before it finishes (dropped); each row's energy is priced. Balance the rest over
    ranks (or, `pinned`, send client k to its home rank k mod R, for methods that
    keep client state); with `group_size` > 1, balance whole groups.
    """
    rnd = planner.settings
    if ids is None:
        ids = sample_cohort(planner.seed, round_, len(planner.fleet), planner.sample_size)
    work = workload_of(ids, round_)
    rows, finish = dispatch_rows(planner, ids, round_, work, t0, round_)
    if rnd.partial_work:
        partial_work(planner, rows, finish, work.bytes_up, t0)
    status = rows["status"]  # a view: changes land in the rows
    status[(status == Status.TRAINED) & (finish > rnd.deadline)] = Status.LATE
    rows["bytes_up"][status == Status.LATE] = 0  # never counts
    flat = np.zeros(len(rows), dtype=bool)
    if planner.energy is not None:  # a battery that cannot pay for the work runs flat
        flat = planner.energy.run_flat(rows)
    ready = np.flatnonzero(contributes(status))
    if len(ready) > rnd.cohort:  # over-commitment: the first `cohort` to finish count
        order = ready[np.lexsort((ids[ready], finish[ready]))]
        status[order[rnd.cohort :]] = Status.SURPLUS
    rows["bytes_up"][status == Status.SURPLUS] = 0  # never counts
    trained = contributes(status)
    rows["applied"] = np.where(trained, round_ + 1, 0)
    rows["staleness"] = np.where(trained, 0, -1)
    rows["update_weight"] = trained
    if planner.energy is not None:
        planner.energy.price(rows, flat)
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
    compute + communication time. Status: low_battery (its battery low), unavailable
    (offline at t0), infeasible (footprint over memory budget, if checked), dropped
    (offline before it finishes), else trained. Nothing is sent to a client that never
    starts, and a dropped one sends nothing back. Not yet set: `applied`, `staleness`,
    `update_weight`, `rank`, the energies."""
    prof = planner.fleet.profiles[ids]
    rows = np.zeros(len(ids), dtype=PARTICIPATION_DTYPE)
    rows["round"], rows["client"], rows["device_class"] = round_ + 1, ids, prof["device_class"]
    rows["samples"], rows["memory"] = planner.n_train[ids], prof["memory"]
    rows["steps"] = -(-rows["samples"] // planner.batch_size) * planner.epochs
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
    batteries = None if planner.energy is None else planner.energy.batteries
    if batteries is not None:
        status[batteries.declining(ids)] = Status.LOW_BATTERY
    rows["status"] = status
    rows["charge"] = np.nan
    idle = np.isin(status, (Status.UNAVAILABLE, Status.INFEASIBLE, Status.LOW_BATTERY))
    rows["bytes_down"][idle] = rows["steps"][idle] = 0
    rows["compute_time"][idle] = rows["comm_time"][idle] = 0.0  # they never start
    rows["bytes_up"][idle | (status == Status.DROPPED)] = 0
    rows["dispatch_time"] = t0
    rows["arrival_time"] = np.where(idle, np.nan, t0 + finish)
    return rows, finish


def partial_work(
    planner: Planner, rows: np.ndarray, finish: np.ndarray, bytes_up: np.ndarray, t0: float
) -> None:
    """Cut the work of the started clients that would finish after the deadline to the
    local steps that fit before it (FedProx's partial work): compute time scales with
    the samples the steps take (each epoch's last batch is short). A client that fits
    at least one step and stays online until its new finish is `partial` (and uploads
    its update), one that goes offline before is dropped; one that fits none stays as it
    was (late, or dropped). `finish` and the rows are updated in place."""
    deadline = planner.settings.deadline
    status = rows["status"]
    started = (status == Status.TRAINED) | (status == Status.DROPPED)
    over = np.flatnonzero(started & (finish > deadline) & (rows["compute_time"] > 0)
                          & (rows["samples"] > 0))  # fmt: skip
    n = rows["samples"][over].astype(np.int64)
    b, epochs = planner.batch_size, planner.epochs
    per_epoch = -(-n // b)
    compute, comm = rows["compute_time"][over], rows["comm_time"][over]
    fit = np.maximum(deadline - comm, 0.0) / compute * (epochs * n)  # samples that fit
    done = np.minimum(np.floor(fit / n), epochs - 1).astype(np.int64)  # whole epochs
    steps = done * per_epoch + np.minimum(np.floor((fit - done * n) / b), per_epoch - 1)
    steps = steps.astype(np.int64)

    def share(k: np.ndarray) -> np.ndarray:  # of the full work that the first k steps take
        whole = k // per_epoch
        return (whole * n + (k - whole * per_epoch) * b) / (epochs * n)

    ends = compute * share(steps) + comm
    while np.any(rounded := (steps >= 1) & (ends > deadline)):  # by a float's width
        steps[rounded] -= 1
        ends = compute * share(steps) + comm
    fraction = share(steps)
    inside = steps >= 1
    over, steps, fraction, ends = over[inside], steps[inside], fraction[inside], ends[inside]
    stays = planner.availability.stays_online(rows["client"][over], t0, ends)
    rows["steps"][over], rows["flops"][over] = steps, rows["flops"][over] * fraction
    rows["compute_time"][over] = rows["compute_time"][over] * fraction
    rows["arrival_time"][over] = t0 + ends
    rows["bytes_up"][over] = np.where(stays, bytes_up[over], 0)
    status[over] = np.where(stays, Status.PARTIAL, Status.DROPPED)
    finish[over] = ends


def place(planner: Planner, rows: np.ndarray) -> None:
    """Set the `rank` (and with batched groups the `group`) of the rows whose status is
    trained: balanced by FLOPs over the ranks, or (`pinned`) client k on its home rank
    k mod R; with `group_size` > 1, whole groups. The same for any rank count but the
    ranks themselves."""
    trained = contributes(rows["status"])
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
