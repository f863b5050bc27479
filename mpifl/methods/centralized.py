"""Centralised training, the upper bound: one model trained on the union of every client's
training data, as if it were pooled on a server. Each round is `train.epochs` epochs of
minibatch SGD over the pool in an order drawn from (seed, round). No client trains and
nothing is sent; the rounds only pace the evaluations. Every rank trains the same model
on the same pool (the pool is the size of the data set, so this costs one rank's time and
keeps the result independent of the rank count)."""

from __future__ import annotations

import numpy as np
import torch

from mpifl.kit import Purpose, seeded_model, torch_generator
from mpifl.kit.evaluate import EvalResult
from mpifl.kit.method import MethodContext, Metrics, ServerOnlyMethod
from mpifl.kit.training import loss_and_correct, prepare_model, sgd_epochs
from mpifl.kit.workload import RoundPlan


class Centralized(ServerOnlyMethod):
    """One model on the pooled training data of all clients."""

    name = "centralized"
    checkpointed = ("model",)

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        self.model = prepare_model(seeded_model(ctx.spec, self.config.run.seed), self.config.train)
        parts = [ctx.data.client_train(k) for k in range(ctx.data.n_clients)]
        self.pool = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def server_step(self, sums: dict[str, np.ndarray], plan: RoundPlan) -> Metrics:
        """`train.epochs` epochs over the pool; reports their mean batch loss."""
        n = self.ctx.data.n_clients  # a stream no client uses
        generator = torch_generator(self.config.run.seed, Purpose.TRAIN, plan.round, n)
        return {"train_loss": sgd_epochs(self.model, *self.pool, self.config.train, generator)}

    def evaluate(self) -> list[EvalResult]:
        """The model on the global test set; with run.eval_clients, on every client's own
        test split too."""
        ev = self.ctx.evaluator
        results = [ev.evaluate("global", self.model, *self.ctx.global_test)]
        if self.config.run.eval_clients:
            results += ev.clients(self.ctx.data, lambda k, x, y: loss_and_correct(self.model, x, y))
        return results
