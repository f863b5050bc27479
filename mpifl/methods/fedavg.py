"""FedAvg (docs/algorithms.md section 1): W <- W + eta_s * sum_k n_k (W_k - W) / sum_k n_k."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from mpifl.kit import (
    Purpose,
    algorithms,
    load_initial_state,
    measure_cost,
    seeded_model,
    torch_generator,
)
from mpifl.kit.accumulate import Accumulators
from mpifl.kit.aggregate import average_update, stage_average
from mpifl.kit.batched import ClientTrainer, group_size
from mpifl.kit.evaluate import EvalResult
from mpifl.kit.method import ClientTask, Method, MethodContext, Metrics
from mpifl.kit.training import get_flat, loss_and_correct, prepare_model, set_flat, sgd_epochs
from mpifl.kit.workload import RoundPlan, WholeModel, Workload, checks_footprint


class FedAvg(Method):
    """Every feasible client trains the global model; sample-weighted average of updates."""

    name = "fedavg"
    fields = algorithms.FEDAVG
    client_metrics = {
        "update_norm": (
            "L2 norm",
            "the client's model change over its local training: ||W_k - W||, W its start",
        ),
    }

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        self.model = seeded_model(ctx.spec, self.config.run.seed)
        if self.config.algorithm.server_init:
            load_initial_state(self.model, self.config.algorithm.server_init, "the model")
        self.weights = get_flat(self.model)
        train = self.config.train
        self.model = prepare_model(self.model, train)
        self.work = WholeModel.of(measure_cost(ctx.spec), train)
        self.trainer = ClientTrainer(self.model, train, ctx.spec.input_shape, update_norm=True,
                                     proximal=self.proximal_mu())  # fmt: skip
        self.group_size = group_size(self.config, [self.trainer])

    def proximal_mu(self) -> float:
        """The weight mu of a proximal term mu/2 ||w - W||^2 in each client's local
        objective (FedProx); none in FedAvg."""
        return 0.0

    def workload(self, clients: np.ndarray, round_: int) -> Workload:
        return self.work.workload(self.ctx.data.n_train[clients])

    def accumulator_sizes(self) -> dict[str, int]:
        return {"model": self.weights.numel(), "weight": 1}

    def client_trainer(self, variant: int) -> ClientTrainer:
        return self.trainer

    def client_start(self, task: ClientTask) -> torch.Tensor:
        return self.weights

    def client_finish(
        self, task: ClientTask, start: torch.Tensor, trained: torch.Tensor, acc: Accumulators
    ) -> Metrics:
        """FedAvg's contributions: n W_k and n (the trainer measures update_norm)."""
        stage_average(task, trained, acc)
        return {}

    def server_step(self, sums: dict[str, np.ndarray], plan: RoundPlan) -> Metrics:
        lr = self.config.algorithm.server_lr  # W + eta_s (sum_k n_k W_k / sum_k n_k - W)
        self.weights = average_update(self.weights, sums["model"], sums["weight"][0], lr)
        return {}

    def evaluate(self) -> list[EvalResult]:
        """The global model on the global test set; with run.eval_clients, each client's
        own test split scored by the global model (fine-tuned first on the client's own
        training data for algorithm.finetune_epochs, by a client that can hold its
        training)."""
        ev = self.ctx.evaluator
        set_flat(self.model, self.weights)
        results = [ev.evaluate("global", self.model, *self.ctx.global_test)]
        if self.config.run.eval_clients:
            results += ev.clients(self.ctx.data, self._client_score)
        return results

    def _client_score(self, client: int, x: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
        epochs = self.config.algorithm.finetune_epochs
        if epochs:
            set_flat(self.model, self.weights)  # (undoes the last client's fine-tuning)
            if self._can_train(client):
                tx, ty = self.ctx.data.client_train(client)
                gen = torch_generator(self.config.run.seed, Purpose.FINETUNE, 0, client)
                sgd_epochs(self.model, tx, ty, replace(self.config.train, epochs=epochs), gen)
        return loss_and_correct(self.model, x, y)

    def _can_train(self, client: int) -> bool:
        """Whether the client's memory holds the model's training footprint, as the
        planner checks it (always, when memory is measured instead)."""
        memory = self.ctx.fleet.profiles["memory"][client]
        return not checks_footprint(self.config) or self.work.footprint <= memory
