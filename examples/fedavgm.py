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

from mpifl import kit


class FedAvgM(kit.Method):
    """FedAvg whose server applies the averaged update with momentum."""

    name = "fedavgm"
    fields = {
        "server_lr": kit.number(1.0, 0.0, low_open=True, doc="server learning rate eta_s"),
        "server_momentum": kit.number(0.9, 0.0, 1.0, high_open=True, doc="server momentum beta"),
    }
    checkpointed = ("weights", "velocity")  # the server state a checkpoint saves

    def __init__(self, ctx: kit.MethodContext) -> None:
        super().__init__(ctx)
        model = kit.seeded_model(ctx.spec, self.config.run.seed)  # the same on every rank
        self.weights = kit.get_flat(model)
        self.velocity = torch.zeros_like(self.weights)
        self.model = kit.prepare_model(model, self.config.train)
        self.work = kit.WholeModel.of(kit.measure_cost(ctx.spec), self.config.train)
        # how a client trains: this model under cross-entropy, alone or in the planner's
        # batched groups (kit.ClientTrainer: the same result either way)
        self.trainer = kit.ClientTrainer(self.model, self.config.train, ctx.spec.input_shape)
        self.group_size = kit.group_size(self.config, [self.trainer])

    def workload(self, clients: np.ndarray, round_: int) -> kit.Workload:
        """Every client downloads, trains and uploads the whole model: its memory
        footprint, FLOPs and bytes, from which the engine decides who can train and
        what the virtual clock advances by."""
        return self.work.workload(self.ctx.data.n_train[clients])

    def accumulator_sizes(self) -> dict[str, int]:
        """sum n_k W_k and sum n_k, summed exactly over all ranks."""
        return {"model": self.weights.numel(), "weight": 1}

    # The client step, written once: what a client trains, where it starts, and what it
    # sends (the engine trains the clients in between).
    def client_trainer(self, variant: int) -> kit.ClientTrainer:
        return self.trainer

    def client_start(self, task: kit.ClientTask) -> torch.Tensor:
        """Every client starts from the global model."""
        return self.weights

    def client_finish(
        self,
        task: kit.ClientTask,
        start: torch.Tensor,
        trained: torch.Tensor,
        acc: kit.Accumulators,
    ) -> kit.Metrics:
        """Stage n_k W_k and n_k (kit.stage_average), summed exactly over all ranks."""
        kit.stage_average(task, trained, acc)
        return {}

    def server_step(self, sums: dict[str, np.ndarray], plan: kit.RoundPlan) -> kit.Metrics:
        alg = self.config.algorithm
        if sums["weight"][0] <= 0:  # nobody trained: no step
            return {}
        update = kit.average_update(self.weights, sums["model"], sums["weight"][0]) - self.weights
        self.velocity = alg.server_momentum * self.velocity + update
        self.weights = self.weights + alg.server_lr * self.velocity
        return {"velocity_norm": float(self.velocity.norm())}

    def evaluate(self) -> list[kit.EvalResult]:
        """The global model on the global test set, and on every client's own test split."""
        kit.set_flat(self.model, self.weights)
        results = [self.ctx.evaluator.evaluate("global", self.model, *self.ctx.global_test)]
        if self.config.run.eval_clients:
            results += self.ctx.evaluator.clients(
                self.ctx.data, lambda client, x, y: kit.loss_and_correct(self.model, x, y)
            )
        return results
