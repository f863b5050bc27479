"""Local-only training, a per-client baseline: every client trains its own model on its
own data and never communicates. It is FedAvg's model, initial weights and local training
without the aggregation: all clients start from the model FedAvg starts from, a client's
model persists across rounds in the client-state store, and a client is scored on its own
test split with its own model (the initial one if it has not trained yet)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from mpifl.kit.accumulate import Accumulators
from mpifl.kit.batched import pinned_group_size, train_as_group
from mpifl.kit.evaluate import EvalResult
from mpifl.kit.method import ClientResult, ClientTask, MethodContext, Metrics
from mpifl.kit.training import client_accuracy, get_flat, loss_and_correct, set_flat, sgd_epochs
from mpifl.kit.workload import RoundPlan, Workload
from mpifl.methods.fedavg import FedAvg


class LocalOnly(FedAvg):
    """Each client alone: no aggregation, no server model, no traffic."""

    name = "local"
    fields = {"server_init": FedAvg.fields["server_init"]}  # start every client from it
    stateful = True

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        self.group_size = pinned_group_size(self.config, self.weights.numel(), [self.group])

    def workload(self, clients: np.ndarray, round_: int) -> Workload:
        work = super().workload(clients, round_)
        work.bytes_down[:] = work.bytes_up[:] = 0
        return work

    def accumulator_sizes(self) -> dict[str, int]:
        return {}

    def _load(self, client: int) -> None:
        set_flat(self.model, self._weights_of(client))

    def train_group(self, tasks: Sequence[ClientTask], acc: Accumulators) -> Iterator[ClientResult]:
        """A planned group as one computation, each client from its own model."""
        starts = torch.stack([self._weights_of(task.client) for task in tasks])
        for task, trained, result in train_as_group(self.group, starts, tasks, self.config.train):
            if torch.isfinite(trained).all():
                self.ctx.state.put(task.client, {"weights": trained.clone().numpy()})
            yield result

    def _weights_of(self, client: int) -> torch.Tensor:
        """The client's own model (the initial one before it trains)."""
        state = self.ctx.state.get(client)
        return self.weights if state is None else torch.from_numpy(state["weights"])

    def train_client(self, task: ClientTask, acc: Accumulators) -> ClientResult:
        self._load(task.client)
        x, y = task.train
        loss = sgd_epochs(self.model, x, y, self.config.train, task.generator)
        trained = get_flat(self.model)
        if torch.isfinite(trained).all():
            self.ctx.state.put(task.client, {"weights": trained.numpy()})
        return ClientResult(loss, client_accuracy(self.model, task.test))

    def server_step(self, sums: dict[str, np.ndarray], plan: RoundPlan) -> Metrics:
        """Nothing: there is no server model."""
        return {}

    def evaluate(self) -> list[EvalResult]:
        """Each client's own test split, scored by its own model."""

        def score(client: int, x: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
            self._load(client)
            return loss_and_correct(self.model, x, y)

        return self.ctx.evaluator.clients(self.ctx.data, score)
