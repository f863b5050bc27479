"""FedAvg's contributions and server update, shared by every FedAvg-like method."""

from __future__ import annotations

import numpy as np
import torch

from mpifl.kit.accumulate import Accumulators
from mpifl.kit.method import ClientTask


def stage_average(task: ClientTask, trained: torch.Tensor, acc: Accumulators) -> None:
    """FedAvg's contributions: n W_k (accumulator "model") and n ("weight"), n the
    client's training samples."""
    n = len(task.train[0])
    acc.add("model", trained, n)
    acc.add("weight", torch.ones(1), n)


def average_update(
    weights: torch.Tensor, num: np.ndarray, den: np.ndarray | float, lr: float = 1.0
) -> torch.Tensor:
    """FedAvg's update W + lr (num / den - W), in float64, where den > 0; W elsewhere.

    `num` is the reduced sum of n_k W_k, `den` the reduced sum of n_k (one number, or one
    per coordinate for masked averaging of sub-models). Returns the new float32 weights."""
    w = weights.double()
    den = np.broadcast_to(np.asarray(den, dtype=np.float64), num.shape)
    covered = den > 0
    average = torch.from_numpy(num[covered] / den[covered])
    w[covered] = w[covered] + lr * (average - w[covered])
    return w.float()
