"""Asynchronous (buffered) aggregation on the virtual clock: the event schedule, and the
exact sums each server step will apply.

`concurrency` clients train at once. Each client's update arrives at dispatch time +
its compute + communication time (from its device profile and the method's workload);
the server applies a step once `buffer` updates have arrived (FedBuff; FedAsync is a
buffer of 1). A freed slot is refilled when the update arrives (`dispatch = arrival`,
FedBuff's simulation) or when the server publishes its next model (`dispatch = step`).
A client trains on the model current when it is dispatched, so its staleness is the
number of server steps between that model and the step that applies its update.

The whole schedule is simulated before training, from the seed, the fleet and the
workload: every rank derives the same one, whatever the rank count, and a resumed run
derives it again; batteries with it: a client pays for its work when it is dispatched,
and the charge of every battery moves at every dispatch and server step. Round r of the
engine is the interval during which model r is the server's: its rows are the clients
dispatched with model r (trained from it in that round), and it ends with server step r,
which applies the updates that arrived in it (trained from model r or an earlier one).
Each rank holds, per future step, the exact fixed-point sums of the updates it trained
for that step; they are summed over ranks at the step, and written to checkpoints
already summed, so a resume is byte-identical."""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable

import numpy as np

from mpifl.comm import Comm
from mpifl.config import Config
from mpifl.config.schema import SCHEMA
from mpifl.config.sections import AsynchronousConfig
from mpifl.engine.plan import Planner, dispatch_rows, place
from mpifl.errors import ConfigError
from mpifl.kit import Accumulators, Method, RoundPlan, Workload
from mpifl.results.schema import PARTICIPATION_DTYPE, Status
from mpifl.streams import Purpose, generator

StalenessWeight = Callable[[np.ndarray], np.ndarray]  # staleness (server steps) -> weight
MAX_FRUITLESS = 10_000  # polls and lost updates in a row before the schedule gives up


class Schedule:
    """Every dispatch of a run of `steps` server steps, as participation rows placed on
    ranks, and the virtual time of every server step."""

    def __init__(
        self,
        planner: Planner,
        work: Workload,
        settings: AsynchronousConfig,
        buffer: int,
        weight: StalenessWeight,
        steps: int,
        poll: float,
    ) -> None:
        n_clients = len(planner.fleet)
        if not (isinstance(buffer, int) and 1 <= buffer <= n_clients):
            raise ConfigError(
                "algorithm.buffer", buffer,
                f"must be an integer from 1 to the fleet's {n_clients} clients (a client "
                "trains a model version once)",
            )  # fmt: skip
        if settings.concurrency < buffer:
            raise ConfigError(
                "asynchronous.concurrency", settings.concurrency,
                f"must be >= the method's buffer of {buffer} updates per server step",
            )  # fmt: skip
        self.planner, self.work, self.settings = planner, work, settings
        self.buffer, self.steps, self.poll = buffer, steps, poll
        self._draws = 0  # sampling draws so far: the stream key of the next one
        self._clock = 0.0  # the batteries' virtual time
        self._harvested = np.zeros(len(planner.fleet.class_names))  # since the last step
        self.energy: list[np.ndarray] = []  # each step's `energy` table rows
        rows, self.step_time = self._simulate()
        rows = rows[np.lexsort((rows["client"], rows["round"]))]
        trained = rows["status"] == Status.TRAINED
        rows["update_weight"] = np.where(trained, weight(np.maximum(rows["staleness"], 0)), 0)
        self.rows = rows
        self._bounds = np.searchsorted(rows["round"], np.arange(1, steps + 2))
        self._samples = np.bincount(
            rows["applied"], rows["samples"].astype(np.float64), minlength=steps + 1
        )

    def _dispatch(self, m: int, t: float, version: int, busy: set[int]) -> np.ndarray:
        """Rows of up to m clients sampled at virtual time t (with model `version`) from
        those not `busy`: the same draw as a synchronous round's cohort when none is."""
        n = len(self.planner.fleet)
        size = min(n, m + len(busy))
        draw = generator(self.planner.seed, Purpose.SAMPLE, self._draws).choice(
            n, size=size, replace=False
        )
        ids = np.sort(np.array([k for k in draw if int(k) not in busy][:m], dtype=np.int64))
        key, self._draws = self._draws, self._draws + 1
        self._advance_to(t)
        rows, _ = dispatch_rows(self.planner, ids, version, self.work.take(ids), t, key)
        rows["rank"], rows["applied"], rows["staleness"] = -1, 0, -1
        energy = self.planner.energy
        if energy is not None:  # the work is paid up front
            flat = energy.run_flat(rows)
            energy.price(rows, flat)
            if energy.batteries is not None:
                energy.batteries.pay(self.planner.fleet.profiles[ids], rows, 0.0)
                rows["charge"] = energy.batteries.charge_of(ids)
        return rows

    def _advance_to(self, t: float) -> None:
        """Move the batteries, if any, to virtual time t (idle and harvesting)."""
        energy = self.planner.energy
        if energy is not None and energy.batteries is not None and t > self._clock:
            none = np.zeros(0, PARTICIPATION_DTYPE)
            prof = self.planner.fleet.profiles[:0]
            self._harvested += energy.batteries.advance(self._clock, t, prof, none)
        self._clock = max(self._clock, t)

    def _close_step(self, version: int, start: float, t: float, rows: list[np.ndarray]) -> None:
        """Server step `version` at time t: the `energy` rows of its round, from `start`
        (the step before) (`rows`: the dispatches with its model)."""
        energy = self.planner.energy
        if energy is None:
            return
        self._advance_to(t)
        done = np.concatenate(rows) if rows else np.zeros(0, PARTICIPATION_DTYPE)
        self.energy.append(energy.class_rows(version, start, t, done, self._harvested))
        self._harvested = np.zeros_like(self._harvested)

    def _simulate(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows of every dispatch with a model before the last step, step times).

        A client is never in flight twice, and trains a model version at most once (a
        second copy would be the same update: its random stream is keyed by round)."""
        batches: list[np.ndarray] = []
        in_flight: list[tuple[float, int, int, int]] = []  # (arrival, order, batch, row)
        busy: set[int] = set()  # in flight
        started: set[int] = set()  # started with the current model version
        version, arrived, free, fruitless, order = 0, 0, self.settings.concurrency, 0, 0
        step_time: list[float] = []
        first = 0  # batches[first:] are the dispatches with the current model
        t, refill = 0.0, True
        while len(step_time) < self.steps:
            if fruitless > MAX_FRUITLESS:
                raise ConfigError(
                    "asynchronous.concurrency", self.settings.concurrency,
                    f"no update reached the server in {MAX_FRUITLESS} dispatch attempts and "
                    "arrivals (clients unavailable, infeasible, or offline before they finish)",
                )  # fmt: skip
            if refill and free:
                rows = self._dispatch(free, t, version, busy | started)
                for i in np.flatnonzero(~np.isnan(rows["arrival_time"])):
                    arrival = float(rows["arrival_time"][i])
                    heapq.heappush(in_flight, (arrival, order, len(batches), int(i)))
                    busy.add(int(rows["client"][i]))
                    started.add(int(rows["client"][i]))
                    order, free = order + 1, free - 1
                batches.append(rows)
            if not in_flight:  # nobody could start: poll the fleet again a slot later
                fruitless += 1
                t, refill = t + self.poll, True
                continue
            t, _, b, i = heapq.heappop(in_flight)
            row = batches[b][i]
            busy.discard(int(row["client"]))
            free += 1
            stepped = False
            if row["status"] == Status.TRAINED:
                fruitless = 0
                row["applied"], row["staleness"] = version + 1, version + 1 - row["round"]
                arrived += 1
                if arrived == self.buffer:
                    self._close_step(version, step_time[-1] if step_time else 0.0, t,
                                     batches[first:])  # fmt: skip
                    step_time.append(t)
                    version, arrived, stepped, first = version + 1, 0, True, len(batches)
                    started = set()
            else:  # dropped: went offline before it finished
                fruitless += 1
            refill = self.settings.dispatch == "arrival" or stepped
        rows = np.concatenate(batches) if batches else np.zeros(0, PARTICIPATION_DTYPE)
        rows = rows[rows["round"] <= self.steps]  # dispatched after the last step: never run
        in_flight_at_end = (rows["status"] == Status.TRAINED) & (rows["applied"] == 0)
        rows["status"][in_flight_at_end] = Status.SURPLUS
        rows["bytes_up"][in_flight_at_end] = 0
        return rows, np.array(step_time)

    def plan(self, round_: int) -> RoundPlan:
        """Round `round_` (0-based): the clients dispatched with its model, placed on ranks;
        its duration ends at server step `round_`."""
        rows = self.rows[self._bounds[round_] : self._bounds[round_ + 1]].copy()
        place(self.planner, rows)
        start = float(self.step_time[round_ - 1]) if round_ else 0.0
        return RoundPlan(round_, rows, float(self.step_time[round_]) - start)

    def scale(self, step: int) -> float:
        """The fixed-point scale of step `step`'s sums: 1 / samples of its updates."""
        return 1.0 / max(float(self._samples[step + 1]), 1.0)

    def pending_after(self, next_round: int) -> list[int]:
        """Steps from `next_round` on that apply updates dispatched before it."""
        rows = self.rows[(self.rows["round"] <= next_round) & (self.rows["applied"] > next_round)]
        return sorted({int(a) - 1 for a in rows["applied"]})


class PendingUpdates:
    """This rank's exact sums of the updates each future server step will apply.

    It stands where a round's Accumulators stands: a method stages a client's
    contributions with `add`, and the engine, having `route`d to the client's row,
    commits them into the sums of the step that applies its update. A round's commits
    are held apart until the round completes (`end_round`), so that an abandoned round
    leaves nothing behind."""

    def __init__(self, sizes: dict[str, int], frac_bits: int, schedule: Schedule) -> None:
        self.sizes, self.frac_bits, self.schedule = sizes, frac_bits, schedule
        self._steps: dict[int, Accumulators] = {}
        self._round: dict[int, Accumulators] = {}
        self._staged: list[tuple[str, object, float]] = []
        self._step = -1

    def _new(self, step: int) -> Accumulators:
        return Accumulators(self.sizes, self.frac_bits, self.schedule.scale(step))

    def route(self, row: np.void) -> None:
        """The next commit is the update of `row`'s client."""
        self._step = int(row["applied"]) - 1

    def add(self, name: str, x: object, weight: float = 1.0) -> None:
        self._staged.append((name, x, weight))

    def commit(self) -> None:
        staged, self._staged = self._staged, []
        if self._step < 0:
            raise RuntimeError("an update with no server step to apply it was trained")
        if self._step not in self._round:
            self._round[self._step] = self._new(self._step)
        acc = self._round[self._step]
        for name, x, weight in staged:
            acc.add(name, x, weight)
        acc.commit()

    def discard(self) -> None:
        self._staged = []

    def end_round(self) -> None:
        """The round's training is complete: its commits join the pending sums."""
        for step, acc in self._round.items():
            if step in self._steps:
                self._steps[step].merge(acc)
            else:
                self._steps[step] = acc
        self._round = {}

    def abandon_round(self) -> None:
        self._round, self._staged = {}, []

    def take(self, step: int) -> Accumulators:
        """The sums step `step` applies (this rank's part), removed from the pending ones."""
        return self._steps.pop(step, None) or self._new(step)

    def export(self, comm: Comm, next_round: int) -> dict[str, np.ndarray]:
        """The pending sums of every later step, summed over the ranks (collective), as
        raw fixed-point integers: what a checkpoint saves."""
        out = {}
        for step in self.schedule.pending_after(next_round):
            acc = self._steps.get(step) or self._new(step)
            for name, raw in acc.raw_sums(comm).items():
                out[f"pending/{step}/{name}"] = raw
        return out

    def restore(self, state: dict[str, np.ndarray], rank: int) -> None:
        """Rank 0 takes the pending sums of a checkpoint (others hold none)."""
        if rank != 0:
            return
        for key, raw in state.items():
            if key.startswith("pending/"):
                _, step, name = key.split("/")
                if int(step) not in self._steps:
                    self._steps[int(step)] = self._new(int(step))
                self._steps[int(step)].add_raw(name, raw)


def build_schedule(cfg: Config, method: Method, planner: Planner) -> Schedule | None:
    """The run's asynchronous schedule if its method aggregates asynchronously, else None;
    ConfigError for settings that have no meaning in the run's mode."""
    if not method.asynchronous:
        defaults = {k: f.default for k, f in SCHEMA["asynchronous"].items()}
        if any(getattr(cfg.asynchronous, k) != v for k, v in defaults.items()):
            raise ConfigError(
                "asynchronous", cfg.algorithm.name,
                "[asynchronous] is read only by asynchronous methods (fedbuff, fedasync)",
            )  # fmt: skip
        return None
    if math.isfinite(cfg.round.deadline):
        raise ConfigError(
            "round.deadline", cfg.round.deadline,
            "must be inf for an asynchronous method: a server step waits for its buffer",
        )  # fmt: skip
    if cfg.round.interval:
        raise ConfigError("round.interval", cfg.round.interval, "must be 0 (asynchronous)")
    if cfg.round.overcommit != 1.0:
        raise ConfigError("round.overcommit", cfg.round.overcommit, "must be 1 (asynchronous)")
    if cfg.selection.name != "uniform":
        raise ConfigError(
            "selection.name", cfg.selection.name,
            "must be 'uniform' for an asynchronous method (clients are dispatched as slots free)",
        )  # fmt: skip
    work = method.workload(np.arange(len(planner.fleet)), 0)
    return Schedule(planner, work, cfg.asynchronous, method.buffer, method.staleness_weights,
                    cfg.run.rounds, cfg.emulation.slot)  # fmt: skip
