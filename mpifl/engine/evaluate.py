"""Server-side evaluation spread over all ranks, with a rank-count-independent result."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mpifl.comm import Comm
from mpifl.engine.accumulate import Accumulators
from mpifl.engine.local_training import loss_and_correct

CHUNK = 256  # fixed chunk size: each chunk's numbers do not depend on the rank count


@dataclass(frozen=True)
class EvalResult:
    """Mean loss and accuracy of one model (group) on one data set."""

    group: str
    loss: float
    accuracy: float
    samples: int


class Evaluator:
    """Shards a data set in fixed chunks over ranks (chunk i on rank i mod R), sums exactly."""

    def __init__(self, comm: Comm, frac_bits: int) -> None:
        self.comm, self.frac_bits = comm, frac_bits

    def evaluate(
        self, group: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> EvalResult:
        """Mean cross-entropy and accuracy of `model` on (x, y), computed by all ranks."""
        n = len(x)
        sums = Accumulators({"sums": 2}, self.frac_bits, scale=1.0 / max(n, 1))
        for chunk, lo in enumerate(range(0, n, CHUNK)):
            if chunk % self.comm.size == self.comm.rank:
                loss, correct = loss_and_correct(model, x[lo : lo + CHUNK], y[lo : lo + CHUNK])
                sums.add("sums", torch.tensor([loss, float(correct)], dtype=torch.float64))
                sums.commit()
        loss_sum, correct = sums.reduce(self.comm)["sums"]
        return EvalResult(group, loss_sum / max(n, 1), round(correct) / max(n, 1), n)

    def mean_over_clients(
        self, group: str, per_client: list[tuple[float, float]], n_clients: int
    ) -> EvalResult:
        """Mean (loss, accuracy) over clients; each rank passes its own clients' values and
        `n_clients` bounds the total. `samples` is the number of clients averaged."""
        sums = Accumulators({"sums": 3}, self.frac_bits, scale=1.0 / max(n_clients, 1))
        for loss, accuracy in per_client:
            sums.add("sums", torch.tensor([loss, accuracy, 1.0], dtype=torch.float64))
            sums.commit()
        loss_sum, acc_sum, count = sums.reduce(self.comm)["sums"]
        n = round(count)
        return EvalResult(group, loss_sum / max(n, 1), acc_sum / max(n, 1), n)
