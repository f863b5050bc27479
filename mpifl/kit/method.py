"""The method seam: what a federated learning method supplies to the engine.

The engine owns sampling, scheduling, emulation, collectives and records. A method owns
the learning: the per-client cost of its work (for the plan), the named flat
accumulators it needs, the client work that adds into them, the server step that turns
their exact sums into the next state (returning what it measured), and its evaluation.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import numpy as np
import torch

from mpifl.config import Config
from mpifl.config.fields import Field
from mpifl.data.federated import FederatedData, Split
from mpifl.fleet.profiles import Fleet
from mpifl.kit.accumulate import Accumulators
from mpifl.kit.distill import Distiller
from mpifl.kit.evaluate import EvalResult, Evaluator
from mpifl.kit.state_store import ClientStateStore
from mpifl.kit.workload import RoundPlan, Workload
from mpifl.models import ModelSpec

Metrics = dict[str, float]  # name -> value, recorded in the result file's server table


@dataclass
class MethodContext:
    """What a method may use: config, data, fleet, the model spec, and the engine's
    collective services (evaluation, distillation, and for a `stateful` method the
    client-state store of this rank)."""

    config: Config
    data: FederatedData
    fleet: Fleet
    spec: ModelSpec
    evaluator: Evaluator
    distiller: Distiller
    state: ClientStateStore | None = None
    speedup: np.ndarray | None = None  # per client, bf16 speed over fp32 (None: fp32)

    @cached_property
    def global_test(self) -> Split:
        """The global test set, materialised once."""
        return self.data.global_test()

    @cached_property
    def all_clients(self) -> np.ndarray:
        """Every client id, 0 .. N-1."""
        return np.arange(self.data.n_clients)

    @cached_property
    def proxy(self) -> Split:
        """The server's proxy set, materialised once."""
        return self.data.proxy()


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


class Method(ABC):
    """Base class of a federated learning method (listed in mpifl.methods.METHODS)."""

    name: ClassVar[str]
    fields: ClassVar[dict[str, Field]] = {}  # method-specific [algorithm] keys
    stateful: ClassVar[bool] = False  # keeps per-client state: clients stay on a home rank
    checkpointed: ClassVar[tuple[str, ...]] = ("weights",)  # attributes a checkpoint saves
    plugin_models: ClassVar[bool] = True  # works with a user's model (model.arch plugin)
    asynchronous: ClassVar[bool] = False  # aggregates buffered updates (engine.asynchronous)
    buffer: int = 1  # asynchronous: updates per server step
    group_size: int = 1  # > 1: the planner forms batched groups for `train_clients`

    def __init__(self, ctx: MethodContext) -> None:
        self.ctx = ctx
        self.config = ctx.config

    @abstractmethod
    def workload(self, clients: np.ndarray, round_: int) -> Workload:
        """Cost of round `round_`'s work per client id (footprint, FLOPs, bytes, tier)."""

    @abstractmethod
    def accumulator_sizes(self) -> dict[str, int]:
        """Named flat accumulators (element counts) the client work adds into."""

    @abstractmethod
    def train_client(self, task: ClientTask, acc: Accumulators) -> ClientResult:
        """Train one client from the current state and stage its contributions in `acc`."""

    def staleness_weights(self, staleness: np.ndarray) -> np.ndarray:
        """Asynchronous methods: the weight of an update per staleness (server steps)."""
        return np.ones(len(staleness))

    def train_clients(
        self, tasks: Sequence[ClientTask], acc: Accumulators
    ) -> Iterator[ClientResult]:
        """What the engine calls: one client, or with `group_size` > 1 a group formed by
        the planner (`train_group`). Yields one result per task, in order, having staged
        that client's contributions in `acc` just before yielding it: the engine commits
        (or discards) them one client at a time."""
        if self.group_size > 1:
            yield from self.train_group(tasks, acc)
        else:
            for task in tasks:
                yield self.train_client(task, acc)

    def train_group(self, tasks: Sequence[ClientTask], acc: Accumulators) -> Iterator[ClientResult]:
        """Train a planned group of clients (one variant) as one batched computation
        (kit.batched), yielding as `train_clients` does; the default trains them one by
        one. A method that overrides it sets `group_size` (kit.batched.group_size)."""
        for task in tasks:
            yield self.train_client(task, acc)

    @abstractmethod
    def server_step(self, sums: dict[str, np.ndarray], plan: RoundPlan) -> Metrics:
        """Turn the reduced sums (identical on every rank) into the next state; `plan` is
        the round's plan (who was scheduled, with which variant). Returns what it
        measured (e.g. a distillation loss; identical on every rank), {} if nothing."""

    @abstractmethod
    def evaluate(self) -> list[EvalResult]:
        """Evaluate on the global test set (collective); the first result is the headline."""

    def state_dict(self) -> dict[str, np.ndarray]:
        """The server-side state named by `checkpointed`, as numpy arrays."""
        out: dict[str, np.ndarray] = {}
        for name in self.checkpointed:
            value = getattr(self, name)
            if isinstance(value, torch.nn.Module):
                out.update({f"{name}/{k}": v.numpy().copy() for k, v in value.state_dict().items()})
            elif isinstance(value, list):
                out.update(
                    {f"{name}/{i}": torch.as_tensor(v).numpy().copy() for i, v in enumerate(value)}
                )
            else:
                out[name] = np.array(torch.as_tensor(value).numpy())
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore what `state_dict` saved."""
        for name in self.checkpointed:
            value = getattr(self, name)
            if isinstance(value, torch.nn.Module):
                prefix = f"{name}/"
                value.load_state_dict(
                    {
                        k[len(prefix) :]: torch.from_numpy(v)
                        for k, v in state.items()
                        if k.startswith(prefix)
                    }
                )
            elif isinstance(value, list):
                setattr(
                    self, name, [torch.from_numpy(state[f"{name}/{i}"]) for i in range(len(value))]
                )
            elif isinstance(value, torch.Tensor):
                setattr(self, name, torch.from_numpy(state[name]))
            elif isinstance(value, np.ndarray):
                setattr(self, name, state[name].copy())
            else:
                setattr(self, name, type(value)(state[name]))


class ServerOnlyMethod(Method):
    """A method whose clients do no work (baselines): nothing is trained on a client,
    held, sent or aggregated; sampled clients are recorded as the plan made them."""

    def workload(self, clients: np.ndarray, round_: int) -> Workload:
        return Workload.idle(len(clients))

    def accumulator_sizes(self) -> dict[str, int]:
        return {}

    def train_client(self, task: ClientTask, acc: Accumulators) -> ClientResult:
        return ClientResult(math.nan, math.nan)
