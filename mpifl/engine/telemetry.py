"""Per-rank telemetry of a round: clients, time in training, collectives and the whole
round, memory, and the client-state store's traffic (the `ranks` table)."""

from __future__ import annotations

import resource

import numpy as np
import psutil

from mpifl.kit.state_store import ClientStateStore
from mpifl.results.schema import RANKS_DTYPE


class RankTelemetry:
    """Builds this rank's `ranks` row for each round."""

    def __init__(self, rank: int, store: ClientStateStore | None) -> None:
        self.rank, self.store = rank, store
        self._process = psutil.Process()

    def row(
        self, round_: int, clients: int, train_time: float, comm_time: float, wall_time: float
    ) -> np.ndarray:
        """The one-row table of round `round_` (from 0) on this rank."""
        row = np.zeros(1, dtype=RANKS_DTYPE)
        row[["round", "rank", "clients"]] = (round_ + 1, self.rank, clients)
        row["train_time"], row["comm_time"], row["wall_time"] = train_time, comm_time, wall_time
        row["rss"] = self._process.memory_info().rss
        row["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        if self.store is not None:
            stats = self.store.take_stats()
            row["state_hits"], row["state_misses"] = stats.hits, stats.misses
            row["state_bytes_read"] = stats.bytes_read
            row["state_bytes_written"] = stats.bytes_written
            row["state_ram_bytes"] = self.store.ram_bytes
        return row
