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
from mpifl.errors import MethodError
from mpifl.fleet.profiles import Fleet
from mpifl.kit.accumulate import Accumulators
from mpifl.kit.batched import ClientTrainer
from mpifl.kit.distill import Distiller
from mpifl.kit.evaluate import EvalResult, Evaluator
from mpifl.kit.state_store import ClientStateStore
from mpifl.kit.task import ClientResult, ClientTask, Metrics
from mpifl.kit.workload import RoundPlan, Workload
from mpifl.models import ModelSpec


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


class Method(ABC):
    """Base class of a federated learning method (listed in mpifl.methods.BUILT_IN)."""

    name: ClassVar[str]
    fields: ClassVar[dict[str, Field]] = {}  # method-specific [algorithm] keys
    stateful: ClassVar[bool] = False  # keeps per-client state: clients stay on a home rank
    checkpointed: ClassVar[tuple[str, ...]] = ("weights",)  # attributes a checkpoint saves
    plugin_models: ClassVar[bool] = True  # works with a user's model (model.arch plugin)
    asynchronous: ClassVar[bool] = False  # aggregates buffered updates (engine.asynchronous)
    buffer: int = 1  # asynchronous: updates per server step
    group_size: int = 1  # clients per group the planner forms (speed only; batched.group_size)
    client_metrics: ClassVar[dict[str, tuple[str, str]]] = {}  # name -> (unit, description)

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
    def client_trainer(self, variant: int) -> ClientTrainer:
        """How clients of model variant `variant` train (kit.batched.ClientTrainer: the
        model, its loss, clip and predicting head); built once, reused every round."""

    @abstractmethod
    def client_start(self, task: ClientTask) -> torch.Tensor:
        """The flat parameters (P,) the client starts its local training from (the same
        tensor object for clients that start alike, e.g. the global model)."""

    @abstractmethod
    def client_finish(
        self, task: ClientTask, start: torch.Tensor, trained: torch.Tensor, acc: Accumulators
    ) -> Metrics:
        """A trained client's end of round: stage its contributions in `acc` and keep
        its client state, from its trained parameters `trained` (P,) and those it started
        from (`start`, what client_start gave); returns its values of the method's
        `client_metrics` ({} if it declares none)."""

    def client_offset(self, task: ClientTask) -> torch.Tensor | None:
        """A constant (P,) the client adds to each of its local gradients (SCAFFOLD's
        control-variate correction c - c_i), or None (the default: none)."""
        return None

    def staleness_weights(self, staleness: np.ndarray) -> np.ndarray:
        """Asynchronous methods: the weight of an update per staleness (server steps)."""
        return np.ones(len(staleness))

    def train_clients(
        self, tasks: Sequence[ClientTask], acc: Accumulators
    ) -> Iterator[ClientResult]:
        """What the engine calls with a planned group of clients of one variant (or one
        client): the method's client step (`client_start`, `client_offset`, the trainer
        of `client_trainer`, `client_finish`). Yields one result per task, in order, having
        staged that client's contributions in `acc` just before yielding it: the engine
        commits (or discards) them one client at a time."""
        trainer = self.client_trainer(tasks[0].variant)
        starts = [self.client_start(task) for task in tasks]
        offsets = [self.client_offset(task) for task in tasks]
        shifted = any(o is not None for o in offsets)
        if shifted and any(o is None for o in offsets):
            raise MethodError(f"method {self.name!r}: client_offset gave None for some clients")
        trained = trainer.train_tasks(starts, tasks, offsets if shifted else None)
        for start, (task, weights, result) in zip(starts, trained, strict=True):
            figures = self.client_finish(task, start, weights, acc)
            if not isinstance(figures, dict):
                raise MethodError(
                    f"method {self.name!r}: client_finish must return a dict of its "
                    f"client_metrics values ({{}} if it declares none), not {figures!r:.60}"
                )
            result.metrics.update(figures)
            yield result

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

    def client_trainer(self, variant: int) -> ClientTrainer:
        raise TypeError("a server-only method trains no client")

    client_start = client_finish = client_trainer  # never called: train_clients trains none

    def train_clients(
        self, tasks: Sequence[ClientTask], acc: Accumulators
    ) -> Iterator[ClientResult]:
        for _ in tasks:
            yield ClientResult(math.nan, math.nan)
