"""What a method tells the planner about a round's client work, and what it gets back.

A method's `workload` returns a Workload (per-client cost: memory footprint, training
FLOPs, bytes each way, and which of its model variants the client trains); the planner
turns it into a RoundPlan, which the server step receives.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from mpifl.config import Config
from mpifl.config.sections import TrainConfig
from mpifl.fleet.profiles import Fleet, transfer_times
from mpifl.models.cost import ModelCost
from mpifl.results.schema import contributes


@dataclass
class Workload:
    """Per-client cost of a method's round work (arrays aligned with a client-id array)."""

    footprint: np.ndarray  # i8 bytes
    train_flops: np.ndarray  # f8 total training FLOPs this round
    bytes_down: np.ndarray  # i8
    bytes_up: np.ndarray  # i8
    width: np.ndarray  # f4
    prune: np.ndarray  # f4
    variant: np.ndarray  # i2: which of the method's model variants the client trains

    def take(self, clients: np.ndarray) -> Workload:
        """The work of `clients` (positions in this one's arrays)."""
        return Workload(*(getattr(self, f.name)[clients] for f in fields(self)))

    @classmethod
    def idle(cls, n: int) -> Workload:
        """n clients with nothing to train, hold or send (arrays of their own)."""
        zeros = lambda: np.zeros(n, dtype=np.int64)  # noqa: E731
        return cls(zeros(), np.zeros(n), zeros(), zeros(), np.ones(n, np.float32),
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
    def trained_clients(self) -> np.ndarray:
        """Ids of the clients scheduled to train (on any rank)."""
        return self.rows["client"][self.rows["rank"] >= 0]

    @property
    def total_samples(self) -> int:
        """Training samples of all scheduled clients (the aggregation weight scale)."""
        mask = contributes(self.rows["status"])
        return int(self.rows["samples"][mask].sum())


@dataclass(frozen=True)
class WholeModel:
    """The work of a client that downloads one model, trains it and uploads it whole
    (FedAvg and its relatives)."""

    footprint: int  # training memory, bytes
    flops_per_sample: float  # training FLOPs per sample over all local epochs
    model_bytes: int

    @classmethod
    def of(cls, cost: ModelCost, train: TrainConfig) -> WholeModel:
        """The work of training a model of `cost` under `train`."""
        return cls(footprint(cost, train), cost.train_flops_per_sample * train.epochs,
                   cost.param_bytes)  # fmt: skip

    def workload(self, n_train: np.ndarray) -> Workload:
        """The Workload of clients holding `n_train` training samples each."""
        n = len(n_train)
        model_bytes = np.full(n, self.model_bytes, dtype=np.int64)
        return Workload(
            footprint=np.full(n, self.footprint, dtype=np.int64),
            train_flops=n_train * self.flops_per_sample,
            bytes_down=model_bytes,
            bytes_up=model_bytes.copy(),
            width=np.ones(n, dtype=np.float32),
            prune=np.zeros(n, dtype=np.float32),
            variant=np.zeros(n, dtype=np.int16),
        )


def footprint(cost: ModelCost, train: TrainConfig) -> int:
    """Training memory of a model of `cost` under `train` (batch size, momentum buffer,
    precision)."""
    return cost.footprint(train.batch_size, train.momentum > 0, train.precision == "bf16")


def checks_footprint(cfg: Config) -> bool:
    """Whether a client whose analytic training footprint exceeds its memory cannot train:
    not when memory is measured instead (emulation.memory = "measured")."""
    return cfg.emulation.memory != "measured"


def bf16_speedup(cfg: Config, fleet: Fleet) -> np.ndarray | None:
    """Per client, how much faster than its fp32 speed it trains at the run's precision:
    None for fp32; for bf16 its device class's `bf16` factor (1 for a class the job does
    not describe, e.g. one only in a fleet file)."""
    if cfg.train.precision != "bf16":
        return None
    classes = cfg.fleet.classes
    factor = [classes[name].bf16 if name in classes else 1.0 for name in fleet.class_names]
    return np.array(factor, dtype=np.float64)[fleet.profiles["device_class"]]


def virtual_times(
    profiles: np.ndarray,
    train_flops: np.ndarray,
    bytes_down: np.ndarray,
    bytes_up: np.ndarray,
    speedup: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(compute, comm) virtual seconds: FLOPs / speed (times `speedup`, per client, if
    given); 2 x latency + bytes / bandwidth."""
    speed = profiles["flops"] if speedup is None else profiles["flops"] * speedup
    compute = train_flops / speed
    down, up = transfer_times(profiles, bytes_down, bytes_up)
    return compute, 2 * profiles["latency"].astype(np.float64) + down + up
