"""Local-only training, a per-client baseline: every client trains its own model on its
own data and never communicates. It is FedAvg's model, initial weights and local training
without the aggregation: all clients start from the model FedAvg starts from, a client's
model persists across rounds in the client-state store, and a client is scored on its own
test split with its own model (the initial one if it has not trained yet)."""

from __future__ import annotations

import numpy as np
import torch

from mpifl.kit.accumulate import Accumulators
from mpifl.kit.evaluate import EvalResult
from mpifl.kit.method import ClientTask, Metrics
from mpifl.kit.training import loss_and_correct, set_flat
from mpifl.kit.workload import RoundPlan, Workload
from mpifl.methods.fedavg import FedAvg


class LocalOnly(FedAvg):
    """Each client alone: no aggregation, no server model, no traffic."""

    name = "local"
    fields = {"server_init": FedAvg.fields["server_init"]}  # start every client from it
    stateful = True

    def workload(self, clients: np.ndarray, round_: int) -> Workload:
        work = super().workload(clients, round_)
        work.bytes_down[:] = work.bytes_up[:] = 0
        return work

    def accumulator_sizes(self) -> dict[str, int]:
        return {}

    def client_start(self, task: ClientTask) -> torch.Tensor:
        return self._weights_of(task.client)

    def _weights_of(self, client: int) -> torch.Tensor:
        """The client's own model (the initial one before it trains)."""
        state = self.ctx.state.get(client)
        return self.weights if state is None else torch.from_numpy(state["weights"])

    def client_finish(
        self, task: ClientTask, start: torch.Tensor, trained: torch.Tensor, acc: Accumulators
    ) -> Metrics:
        """Keep the trained model as the client's own (a non-finite one is not kept); its
        update norm (measured by the trainer) is the change of the client's own model."""
        if torch.isfinite(trained).all():
            self.ctx.state.put(task.client, {"weights": trained.clone().numpy()})
        return {}

    def server_step(self, sums: dict[str, np.ndarray], plan: RoundPlan) -> Metrics:
        """Nothing: there is no server model."""
        return {}

    def evaluate(self) -> list[EvalResult]:
        """Each client's own test split, scored by its own model."""

        def score(client: int, x: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
            set_flat(self.model, self._weights_of(client))
            return loss_and_correct(self.model, x, y)

        return self.ctx.evaluator.clients(self.ctx.data, score)
