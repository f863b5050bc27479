"""Local-only training, a per-client baseline: every client trains its own model on its
own data and never communicates. All clients start from the same initial model (the one
FedAvg starts from); a client's model persists across rounds in the client-state store,
and a client is scored on its own test split with its own model (or the initial one if it
has not trained yet)."""

from __future__ import annotations

import math

import numpy as np
import torch

from mpifl.engine.accumulate import Accumulators
from mpifl.engine.evaluate import EvalResult
from mpifl.engine.local_training import (
    get_flat,
    loss_and_correct,
    prepare_model,
    set_flat,
    sgd_epochs,
)
from mpifl.engine.plan import RoundPlan, Workload
from mpifl.methods import register
from mpifl.methods.base import ClientResult, ClientTask, Method, MethodContext
from mpifl.models import build_model, measure_cost
from mpifl.streams import torch_init_seed


@register
class LocalOnly(Method):
    """Each client alone: no aggregation, no server model, no traffic."""

    name = "local"
    stateful = True

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(torch_init_seed(self.config.run.seed))
            self.model = build_model(ctx.spec)
        self.weights = get_flat(self.model)  # the common initial model
        train = self.config.train
        self.model = prepare_model(self.model, train)
        cost = measure_cost(ctx.spec)
        self.footprint = cost.footprint(train.batch_size, train.momentum > 0)
        self.flops_per_sample = cost.train_flops_per_sample * train.epochs

    def workload(self, clients: np.ndarray, round_: int) -> Workload:
        n = len(clients)
        return Workload(
            footprint=np.full(n, self.footprint, dtype=np.int64),
            train_flops=self.ctx.data.n_train[clients] * self.flops_per_sample,
            bytes_down=np.zeros(n, dtype=np.int64),
            bytes_up=np.zeros(n, dtype=np.int64),
            width=np.ones(n, dtype=np.float32),
            prune=np.zeros(n, dtype=np.float32),
            family=np.zeros(n, dtype=np.int16),
        )

    def accumulator_sizes(self) -> dict[str, int]:
        return {}

    def _load(self, client: int) -> None:
        state = self.ctx.state.get(client)
        set_flat(self.model, self.weights if state is None else torch.from_numpy(state["weights"]))

    def train_client(self, task: ClientTask, acc: Accumulators) -> ClientResult:
        self._load(task.client)
        x, y = task.train
        loss = sgd_epochs(self.model, x, y, self.config.train, task.generator)
        trained = get_flat(self.model)
        if torch.isfinite(trained).all():
            self.ctx.state.put(task.client, {"weights": trained.numpy()})
        _, correct = loss_and_correct(self.model, *task.test)
        n_test = len(task.test[0])
        return ClientResult(loss, correct / n_test if n_test else math.nan)

    def server_step(self, sums: dict[str, np.ndarray], plan: RoundPlan) -> None:
        """Nothing: there is no server model."""

    def evaluate(self) -> list[EvalResult]:
        """Each client's own test split, scored by its own model."""

        def score(client: int, x: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
            self._load(client)
            return loss_and_correct(self.model, x, y)

        return self.ctx.evaluator.clients(self.ctx.data, score)
