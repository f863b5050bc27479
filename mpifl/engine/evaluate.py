"""Server-side evaluation spread over all ranks, with a rank-count-independent result."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mpifl.comm import Comm
from mpifl.data.federated import FederatedData
from mpifl.engine.accumulate import Accumulators
from mpifl.engine.local_training import loss_and_correct

CHUNK = 256  # fixed chunk size: each chunk's numbers do not depend on the rank count
ClientScore = Callable[[int, torch.Tensor, torch.Tensor], tuple[float, int]]


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
        sums = Accumulators({"sums": 2}, self.frac_bits, 1.0 / max(n, 1), torch.float64)
        for chunk, lo in enumerate(range(0, n, CHUNK)):
            if chunk % self.comm.size == self.comm.rank:
                loss, correct = loss_and_correct(model, x[lo : lo + CHUNK], y[lo : lo + CHUNK])
                sums.add("sums", torch.tensor([loss, float(correct)], dtype=torch.float64))
                sums.commit()
        loss_sum, correct = sums.reduce(self.comm)["sums"]
        return EvalResult(group, loss_sum / max(n, 1), round(correct) / max(n, 1), n)

    def clients(self, data: FederatedData, score: ClientScore) -> list[EvalResult]:
        """Every client's own test split, scored by the model that client would use:
        `score(k, x, y)` returns (summed loss, correct). Client k is scored on rank
        k mod R (a stateful client's home rank). Returns `clients/mean` (the mean over
        clients with test samples of their loss and accuracy; `samples` = clients) and
        `clients/pooled` (all those test samples pooled, i.e. weighted by test size)."""
        tested = np.flatnonzero(data.n_test > 0)
        mean = Accumulators({"v": 3}, self.frac_bits, 1.0 / max(len(tested), 1), torch.float64)
        pooled = Accumulators(
            {"v": 3}, self.frac_bits, 1.0 / max(data.n_test.sum(), 1), torch.float64
        )
        for k in tested[tested % self.comm.size == self.comm.rank]:
            x, y = data.client_test(int(k))
            loss, correct = score(int(k), x, y)
            n = len(x)
            mean.add("v", torch.tensor([loss / n, correct / n, 1.0], dtype=torch.float64))
            pooled.add("v", torch.tensor([loss, float(correct), float(n)], dtype=torch.float64))
            mean.commit()
            pooled.commit()
        m_loss, m_acc, clients = mean.reduce(self.comm)["v"]
        p_loss, p_correct, samples = pooled.reduce(self.comm)["v"]
        n_clients, n_samples = max(round(clients), 1), max(round(samples), 1)
        return [
            EvalResult("clients/mean", m_loss / n_clients, m_acc / n_clients, round(clients)),
            EvalResult(
                "clients/pooled", p_loss / n_samples, round(p_correct) / n_samples, round(samples)
            ),
        ]
