"""Server-side evaluation spread over all ranks, with a rank-count-independent result."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mpifl.comm import Comm
from mpifl.data.federated import FederatedData
from mpifl.kit.training import loss_and_correct

CHUNK = 256  # fixed chunk size: each chunk's numbers do not depend on the rank count
GROUP_BYTES = 32  # the eval table's group field (mpifl/results/schema.py)
ClientScore = Callable[[int, torch.Tensor, torch.Tensor], tuple[float, int]]


@dataclass(frozen=True)
class EvalResult:
    """Mean loss and accuracy of one model (group) on one data set."""

    group: str
    loss: float
    accuracy: float
    samples: int


class Evaluator:
    """Shards a data set in fixed chunks over ranks (chunk i on rank i mod R) and combines
    the per-chunk (per-client) figures in index order, so every result is bitwise the same
    for any rank count, and a diverged model's loss (inf, nan) is reported, not rejected."""

    def __init__(
        self, comm: Comm, device_class: np.ndarray | None = None, class_names: list[str] = ()
    ) -> None:
        self.comm = comm
        self.device_class, self.class_names = device_class, list(class_names)

    def _class_group(self, k: int) -> str:
        """`clients/mean/<class name>`, or `clients/mean/#<k>` if the name would not fit the
        eval table's 32-byte group field whole (two long names must not collide)."""
        name = f"clients/mean/{self.class_names[k]}"
        return name if len(name.encode()) <= GROUP_BYTES else f"clients/mean/#{k}"

    def _table(self, rows: dict[int, list[float]], n: int, width: int) -> np.ndarray:
        """(n, width) float64: row i from the one rank that computed it. Every other rank
        adds zeros, so the sum over ranks is exact (x + 0 = x) in any reduction order."""
        table = np.zeros((n, width))
        for i, row in rows.items():
            table[i] = row
        return self.comm.allreduce_sum(table.reshape(-1)).reshape(n, width)

    def evaluate(
        self, group: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> EvalResult:
        """Mean cross-entropy and accuracy of `model` on (x, y), computed by all ranks."""
        n = len(x)
        starts = range(0, n, CHUNK)
        mine = {
            chunk: list(loss_and_correct(model, x[lo : lo + CHUNK], y[lo : lo + CHUNK]))
            for chunk, lo in enumerate(starts)
            if chunk % self.comm.size == self.comm.rank
        }
        loss_sum, correct = self._table(mine, len(starts), 2).sum(axis=0)
        return EvalResult(group, loss_sum / max(n, 1), round(correct) / max(n, 1), n)

    def clients(self, data: FederatedData, score: ClientScore) -> list[EvalResult]:
        """Every client's own test split, scored by the model that client would use:
        `score(k, x, y)` returns (summed loss, correct). Client k is scored on rank
        k mod R (a stateful client's home rank). Returns `clients/mean` (the mean over
        clients with test samples of their loss and accuracy; `samples` = clients),
        `clients/pooled` (all those test samples pooled, i.e. weighted by test size) and,
        in a fleet of several device classes, `clients/mean/<class>` (the mean over that
        class's clients: what constrained devices get)."""
        tested = np.flatnonzero(data.n_test > 0)
        mine = {}
        for i in np.flatnonzero(tested % self.comm.size == self.comm.rank):
            x, y = data.client_test(int(tested[i]))
            loss, correct = score(int(tested[i]), x, y)
            mine[int(i)] = [loss, float(correct), float(len(x))]
        loss, correct, n = self._table(mine, len(tested), 3).T
        clients, samples = len(tested), round(n.sum())
        mean_loss, accuracy = loss / np.maximum(n, 1), correct / np.maximum(n, 1)
        results = [
            EvalResult(
                "clients/mean", mean_loss.sum() / max(clients, 1),
                accuracy.sum() / max(clients, 1), clients,
            ),
            EvalResult(
                "clients/pooled", loss.sum() / max(samples, 1),
                round(correct.sum()) / max(samples, 1), samples,
            ),
        ]  # fmt: skip
        classes = np.empty(0) if self.device_class is None else self.device_class[tested]
        present = np.unique(classes)
        if len(present) > 1:
            for k in present:
                of, name = classes == k, self._class_group(int(k))
                size = int(of.sum())
                results.append(EvalResult(name, float(mean_loss[of].sum() / size),
                                          float(accuracy[of].sum() / size), size))  # fmt: skip
        return results
