"""FedNova (docs/algorithms.md section 11): each client's update normalised by its local
steps, W <- W - eta_s tau_eff sum_k p_k (W - W_k) / a_k, tau_eff = sum_k p_k a_k."""

from __future__ import annotations

import numpy as np
import torch

from mpifl.kit.accumulate import Accumulators
from mpifl.kit.method import ClientTask, Metrics
from mpifl.kit.workload import RoundPlan
from mpifl.methods.fedavg import FedAvg

STEP_UNIT = 4096.0  # a_k is staged in these units: within the accumulators' range


def local_steps_norm(steps: int, momentum: float) -> float:
    """||a_k||_1 of FedNova for `steps` local steps of SGD with heavy-ball momentum rho:
    [tau - rho (1 - rho^tau) / (1 - rho)] / (1 - rho); tau for plain SGD."""
    if not momentum:
        return float(steps)
    rho = momentum
    return (steps - rho * (1 - rho**steps) / (1 - rho)) / (1 - rho)


class FedNova(FedAvg):
    """FedAvg with each client's update divided by its number of local steps (momentum
    counted), and the average rescaled by the clients' mean step count."""

    name = "fednova"

    def accumulator_sizes(self) -> dict[str, int]:
        return {"update": self.weights.numel(), "steps": 1, "weight": 1}

    def client_finish(
        self, task: ClientTask, start: torch.Tensor, trained: torch.Tensor, acc: Accumulators
    ) -> Metrics:
        """n (W - W_k) / a_k, n a_k (in STEP_UNIT) and n, n the client's samples."""
        n = len(task.train[0])
        a = local_steps_norm(int(task.row["steps"]), self.config.train.momentum) or 1.0  # n = 0
        acc.add("update", (start - trained) / a, n)
        acc.add("steps", torch.tensor([a / STEP_UNIT]), n)
        acc.add("weight", torch.ones(1), n)
        return {}

    def server_step(self, sums: dict[str, np.ndarray], plan: RoundPlan) -> Metrics:
        weight = sums["weight"][0]
        if weight <= 0:
            return {}
        tau_eff = sums["steps"][0] * STEP_UNIT / weight
        step = torch.from_numpy(sums["update"] / weight) * tau_eff
        lr = self.config.algorithm.server_lr
        self.weights = (self.weights.double() - lr * step).float()
        return {"tau_eff": float(tau_eff)}
