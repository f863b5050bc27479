"""Majority class, a per-client baseline: a client predicts the most frequent label of its
own training data (the lowest label on ties), with no training and no traffic. Its loss
is the cross-entropy of the client's label frequencies with add-one smoothing, so that it
is finite. Any personalised method must beat this on label-skewed data to show it learnt
more than each client's label prior."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from mpifl.kit.accumulate import Accumulators
from mpifl.kit.evaluate import EvalResult
from mpifl.kit.method import ClientResult, ClientTask, Metrics, ServerOnlyMethod
from mpifl.kit.workload import RoundPlan


def label_prior(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Add-one smoothed label frequencies."""
    counts = torch.bincount(labels, minlength=n_classes).double() + 1.0
    return counts / counts.sum()


class Majority(ServerOnlyMethod):
    """Each client's majority training label."""

    name = "majority"
    checkpointed = ()

    def score(self, client: int, x: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
        """(summed loss, correct) of the client's label prior on (x, y)."""
        prior = label_prior(self.ctx.data.client_train(client)[1], self.ctx.data.n_classes)
        loss = float(-torch.log(prior[y]).sum())
        return loss, int((y == int(prior.argmax())).sum())

    def train_clients(
        self, tasks: Sequence[ClientTask], acc: Accumulators
    ) -> Iterator[ClientResult]:
        """No training: each client's accuracy on its own test split."""
        for task in tasks:
            x, y = task.test
            correct = self.score(task.client, x, y)[1] if len(x) else 0
            yield ClientResult(math.nan, correct / len(x) if len(x) else math.nan)

    def server_step(self, sums: dict[str, np.ndarray], plan: RoundPlan) -> Metrics:
        """Nothing: there is no server model."""
        return {}

    def evaluate(self) -> list[EvalResult]:
        """Each client's own test split, scored by its majority label."""
        return self.ctx.evaluator.clients(self.ctx.data, self.score)
