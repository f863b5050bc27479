"""FedAvg's client and server steps, shared by every FedAvg-like method."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from mpifl.config.sections import TrainConfig
from mpifl.kit.accumulate import Accumulators
from mpifl.kit.method import ClientResult, ClientTask
from mpifl.kit.training import client_accuracy, set_flat, sgd_epochs

Stage = Callable[[ClientTask, Sequence[torch.Tensor], Accumulators], None]


def stage_average(task: ClientTask, trained: Sequence[torch.Tensor], acc: Accumulators) -> None:
    """FedAvg's contributions: n W_k (accumulator "model") and n ("weight"), n the
    client's training samples."""
    n = len(task.train[0])
    acc.add("model", trained, n)
    acc.add("weight", torch.ones(1), n)


def fedavg_client(
    model: nn.Module,
    weights: torch.Tensor,
    task: ClientTask,
    train: TrainConfig,
    acc: Accumulators,
    stage: Stage = stage_average,
) -> ClientResult:
    """FedAvg's client step: train `model` from `weights` on the client's data, then
    `stage` its trained parameters (by default FedAvg's contributions)."""
    set_flat(model, weights)
    x, y = task.train
    loss = sgd_epochs(model, x, y, train, task.generator)
    stage(task, list(model.parameters()), acc)
    return ClientResult(loss, client_accuracy(model, task.test))


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
