"""A client's turn in a round, and what the engine records of its local work."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from mpifl.data.federated import Split
from mpifl.results.schema import Status

Metrics = dict[str, float]  # name -> value (a server step's, or a client's client_metrics)


@dataclass
class ClientTask:
    """One client's turn in a round."""

    client: int
    round: int
    train: Split
    test: Split
    generator: torch.Generator  # keyed by (seed, round, client)
    row: np.void  # the client's participation row from the plan (width, variant, ...)

    @property
    def variant(self) -> int:
        """Which of the method's model variants the client trains (from its workload)."""
        return int(self.row["variant"])

    @property
    def steps(self) -> int | None:
        """The local SGD steps a partial client trains (round.partial_work: those that fit
        the deadline); None for all of its epochs."""
        return int(self.row["steps"]) if self.row["status"] == Status.PARTIAL else None

    @property
    def update_weight(self) -> float:
        """The weight the server applies the client's update with: its staleness weight
        under asynchronous aggregation, 1 in synchronous rounds."""
        return float(self.row["update_weight"])

    @property
    def stale(self) -> bool:
        """Whether the server will have moved on from the model the client trains on when
        its update is applied (asynchronous aggregation)."""
        return int(self.row["staleness"]) > 0


@dataclass
class ClientResult:
    """What the engine records of a client's local work."""

    loss: float  # mean local training loss
    accuracy: float  # on the client's own test split (NaN if it has none)
    metrics: Metrics = field(default_factory=dict)  # the method's `client_metrics`
