"""Running one rank's clients of a round as the devices they emulate.

Each client's outcome lands in its participation row: out of memory (the measured RSS
growth over its budget, or an allocation failure under the RLIMIT_DATA backstop),
rejected (a non-finite update), or trained with its loss and accuracy; in throttled mode
the client takes at least its virtual compute time, scaled. A trained client's values of
the method's declared `client_metrics` are kept as the round's `client_metrics` rows.
Clients are handed to the method one at a time, or in the batched groups of the plan
(`participation.group`); a group's contributions are still committed, or discarded, one
client at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from numbers import Real

import numpy as np

from mpifl.comm import Comm
from mpifl.config import Config
from mpifl.data.federated import FederatedData
from mpifl.engine.asynchronous import PendingUpdates
from mpifl.engine.signals import StopSignal
from mpifl.engine.throttle import MemoryProbe, is_allocation_failure, sleep_until
from mpifl.errors import MethodError, shown
from mpifl.kit import Accumulators, ClientResult, ClientTask, Method, Metrics
from mpifl.kit.accumulate import UpdateRejected
from mpifl.results.schema import CLIENT_METRICS_DTYPE, Status
from mpifl.streams import Purpose, torch_generator


def groups(rows: np.ndarray) -> list[np.ndarray]:
    """Positions of `rows` as the method gets them: each planned group together (in group
    order), every other row alone, in row order."""
    alone = [np.array([i]) for i in np.flatnonzero(rows["group"] < 0)]
    ids = np.unique(rows["group"][rows["group"] >= 0])
    return alone + [np.flatnonzero(rows["group"] == g) for g in ids]


def not_applied(row: np.void) -> None:
    """Mark a client's update as aggregated by no server step."""
    row["applied"], row["staleness"], row["update_weight"] = 0, -1, 0.0


class ClientRunner:
    """Trains this rank's scheduled clients through the method, emulating each device."""

    def __init__(
        self, cfg: Config, method: Method, data: FederatedData, comm: Comm, stop: StopSignal
    ) -> None:
        self.seed, self.emulation = cfg.run.seed, cfg.emulation
        self.method, self.data, self.comm, self.stop = method, data, comm, stop
        self.measure_memory = cfg.emulation.memory != "analytic"
        self.throttled = cfg.emulation.mode == "throttled"
        self.algorithm = cfg.algorithm.name
        self._figures: list[tuple[int, int, bytes, float]] = []  # this round's client metrics

    def task(self, round_: int, row: np.void) -> ClientTask:
        """Client `row["client"]`'s turn in round `round_`."""
        client = int(row["client"])
        return ClientTask(
            client=client,
            round=round_,
            train=self.data.client_train(client),
            test=self.data.client_test(client),
            generator=torch_generator(self.seed, Purpose.TRAIN, round_, client),
            row=row,
        )

    def run(
        self,
        round_: int,
        rows: np.ndarray,
        acc: Accumulators | PendingUpdates,
        route: Callable[[np.void], None] | None = None,
    ) -> None:
        """Train the clients of `rows` (this rank's, a view that receives the outcomes);
        stops early, between groups, if a stop was requested. `route(row)` is told which
        client's contributions are committed next (asynchronous: into the sums of the
        step that applies its update). The trained clients' client metrics are then
        `client_metrics()`."""
        self._figures = []
        for positions in groups(rows):
            self.comm.poll_failures()
            if self.stop.requested:
                return
            group = [rows[i] for i in positions]  # views: outcomes land in `rows`
            tasks = [self.task(round_, row) for row in group]
            results: Iterator[ClientResult] | None = self.method.train_clients(tasks, acc)
            for row in group:
                if route is not None:
                    route(row)
                results = self._one(results, row, acc)

    def client_metrics(self) -> np.ndarray:
        """The `client_metrics` rows of the clients trained by the last `run`: per client,
        in training order, its figures in the order the method declares them."""
        return np.array(self._figures, dtype=CLIENT_METRICS_DTYPE)

    def _checked(self, row: np.void, metrics: Metrics) -> list[tuple[int, int, bytes, float]]:
        """A client's metrics as `client_metrics` rows (declaration order); MethodError
        if the method returned something it does not declare, or a value that is not a
        number (NaN is: no value)."""
        declared, client = self.method.client_metrics, int(row["client"])
        where = f"method {self.algorithm!r}, client {client} (round {int(row['round'])})"
        if not isinstance(metrics, Mapping):
            raise MethodError(
                f"{where}: client_finish must return a dict of its client_metrics "
                f"values ({{}} if it declares none), not {shown(metrics)}"
            )
        for name, value in metrics.items():
            if name not in declared:
                known = ", ".join(map(repr, declared)) or "none"
                raise MethodError(
                    f"{where}: client_finish returned the client metric {shown(name)}, which "
                    f"the method's client_metrics does not declare (declared: {known})"
                )
            if isinstance(value, bool) or not isinstance(value, Real):
                raise MethodError(
                    f"{where}: client metric {name!r} is {type(value).__name__} "
                    f"{shown(value)}, not a real number (return a float; NaN for no value)"
                )
        out = []
        for name in declared:
            if name in metrics:
                out.append((int(row["round"]), client, name.encode(), float(metrics[name])))
        return out

    def _one(
        self, results: Iterator[ClientResult] | None, row: np.void, acc: Accumulators
    ) -> Iterator[ClientResult] | None:
        """The next client's result, recorded in `row`; None from then on if the group's
        computation ran out of memory (its remaining clients are out of memory too)."""
        started = time.perf_counter()
        result = None
        try:
            if results is not None and self.measure_memory:
                with MemoryProbe() as probe:
                    result = next(results)
                row["measured_memory"] = probe.growth
            elif results is not None:
                result = next(results)
        except (MemoryError, RuntimeError) as exc:  # the RLIMIT_DATA backstop
            if not is_allocation_failure(exc):
                raise
            results = None
        over = self.measure_memory and row["measured_memory"] > row["memory"]
        if result is None or over:
            row["status"], row["bytes_up"] = Status.OOM, 0
            not_applied(row)
            acc.discard()
        else:
            row["loss"], row["accuracy"] = result.loss, result.accuracy
            figures = self._checked(row, result.metrics)
            try:
                acc.commit()
            except UpdateRejected:
                row["status"] = Status.REJECTED
                not_applied(row)
            else:
                self._figures += figures
        if self.throttled:
            target = row["compute_time"] * self.emulation.time_scale
            sleep_until(started, target, lambda: self.stop.requested)
        row["wall_time"] = time.perf_counter() - started
        return results
