"""A method plugin: FedAvg with server momentum (FedAvgM; Hsu, Qi and Brown 2019).

Clients train the global model as in FedAvg. The server treats the sample-weighted
average of the clients' models minus the global model as a pseudo-gradient step and
applies it with momentum:

    v <- beta * v + (sum_k n_k W_k / sum_k n_k - W)
    W <- W + eta_s * v

    [algorithm]
    name = "examples.fedavgm:FedAvgM"
    server_lr = 1.0
    server_momentum = 0.9

It imports only `mpifl.kit`, the seam between the engine and every method; the engine
does sampling, scheduling, emulation, collectives, checkpoints and records.
docs/plugins.md walks through it.
"""

from __future__ import annotations

import numpy as np
import torch

from mpifl.kit import (
    Accumulators,
    ClientResult,
    ClientTask,
    EvalResult,
    Method,
    MethodContext,
    Metrics,
    RoundPlan,
    Workload,
    average_update,
    client_accuracy,
    footprint,
    get_flat,
    loss_and_correct,
    measure_cost,
    number,
    prepare_model,
    seeded_model,
    set_flat,
    sgd_epochs,
)


class FedAvgM(Method):
    """FedAvg whose server applies the averaged update with momentum."""

    name = "fedavgm"
    fields = {
        "server_lr": number(1.0, 0.0, low_open=True, doc="server learning rate eta_s"),
        "server_momentum": number(0.9, 0.0, 1.0, high_open=True, doc="server momentum beta"),
    }
    checkpointed = ("weights", "velocity")  # the server state a checkpoint saves

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        model = seeded_model(ctx.spec, self.config.run.seed)  # the same on every rank
        self.weights = get_flat(model)
        self.velocity = torch.zeros_like(self.weights)
        self.model = prepare_model(model, self.config.train)
        cost = measure_cost(ctx.spec)
        self.footprint = footprint(cost, self.config.train)
        self.flops_per_sample = cost.train_flops_per_sample * self.config.train.epochs
        self.model_bytes = cost.param_bytes

    def workload(self, clients: np.ndarray, round_: int) -> Workload:
        """Every client downloads, trains and uploads the whole model."""
        n = len(clients)
        return Workload(
            footprint=np.full(n, self.footprint, dtype=np.int64),
            train_flops=self.ctx.data.n_train[clients] * self.flops_per_sample,
            bytes_down=np.full(n, self.model_bytes, dtype=np.int64),
            bytes_up=np.full(n, self.model_bytes, dtype=np.int64),
            width=np.ones(n, dtype=np.float32),
            prune=np.zeros(n, dtype=np.float32),
            variant=np.zeros(n, dtype=np.int16),
        )

    def accumulator_sizes(self) -> dict[str, int]:
        """sum n_k W_k and sum n_k, summed exactly over all ranks."""
        return {"model": self.weights.numel(), "weight": 1}

    def train_client(self, task: ClientTask, acc: Accumulators) -> ClientResult:
        set_flat(self.model, self.weights)
        x, y = task.train
        loss = sgd_epochs(self.model, x, y, self.config.train, task.generator)
        acc.add("model", list(self.model.parameters()), len(x))
        acc.add("weight", torch.ones(1), len(x))
        return ClientResult(loss, client_accuracy(self.model, task.test))

    def server_step(self, sums: dict[str, np.ndarray], plan: RoundPlan) -> Metrics:
        alg = self.config.algorithm
        if sums["weight"][0] <= 0:  # nobody trained: no step
            return {}
        update = average_update(self.weights, sums["model"], sums["weight"][0]) - self.weights
        self.velocity = alg.server_momentum * self.velocity + update
        self.weights = self.weights + alg.server_lr * self.velocity
        return {"velocity_norm": float(self.velocity.norm())}

    def evaluate(self) -> list[EvalResult]:
        """The global model on the global test set, and on every client's own test split."""
        set_flat(self.model, self.weights)
        results = [self.ctx.evaluator.evaluate("global", self.model, *self.ctx.global_test)]
        if self.config.run.eval_clients:
            results += self.ctx.evaluator.clients(
                self.ctx.data, lambda client, x, y: loss_and_correct(self.model, x, y)
            )
        return results
