"""SCAFFOLD (docs/algorithms.md section 12): local steps corrected by control variates,
y <- y - eta_l (g_i(y) + c - c_i); option II: c_i+ = c_i - c + (x - y_i) / (a_i eta_l),
a_i the K local steps (with momentum: FedNova's ||a_i||_1, the sum of their weights);
x <- x + eta_g mean(y_i - x), c <- c + sum(c_i+ - c_i) / N."""

from __future__ import annotations

import numpy as np
import torch

from mpifl.kit.accumulate import Accumulators
from mpifl.kit.method import ClientTask, MethodContext, Metrics
from mpifl.kit.workload import RoundPlan, Workload
from mpifl.methods.fedavg import FedAvg
from mpifl.methods.fednova import local_steps_norm


class Scaffold(FedAvg):
    """FedAvg's model with a server control variate c and one per client, c_i, kept in
    the client-state store on the client's home rank (zero until it first trains)."""

    name = "scaffold"
    stateful = True
    checkpointed = ("weights", "control")

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        self.control = torch.zeros_like(self.weights)
        # a client's contributions are staged with this weight (not 1): their sum over a
        # round then spans the exact accumulators' range, which is scaled by 1 / samples
        self.unit = float(np.mean(ctx.data.n_train)) or 1.0

    def workload(self, clients: np.ndarray, round_: int) -> Workload:
        """FedAvg's, with twice the bytes each way: the model and a control variate."""
        work = super().workload(clients, round_)
        work.bytes_down, work.bytes_up = 2 * work.bytes_down, 2 * work.bytes_up
        return work

    def accumulator_sizes(self) -> dict[str, int]:
        size = self.weights.numel()
        return {"update": size, "control": size, "count": 1}

    def _own_control(self, client: int) -> torch.Tensor:
        """c_i: the client's control variate (zero before its first round)."""
        state = self.ctx.state.get(client)
        return torch.zeros_like(self.weights) if state is None else torch.from_numpy(
            state["control"]
        )  # fmt: skip

    def client_offset(self, task: ClientTask) -> torch.Tensor:
        return self.control - self._own_control(task.client)

    def client_finish(
        self, task: ClientTask, start: torch.Tensor, trained: torch.Tensor, acc: Accumulators
    ) -> Metrics:
        """Stage y_i - x, c_i+ - c_i and a count of 1; keep c_i+ (option II over the
        local steps the client trained, each weighted as momentum carries it on)."""
        own = self._own_control(task.client)
        steps = int(task.row["steps"])  # 0: no data, nothing learnt about its gradients
        train = self.config.train
        new = (
            own - self.control + (start - trained) / (local_steps_norm(steps, train.momentum)
                                                      * train.lr)
            if steps
            else own
        )  # fmt: skip
        acc.add("update", trained - start, self.unit)
        acc.add("control", new - own, self.unit)
        acc.add("count", torch.ones(1), self.unit)
        if torch.isfinite(new).all():  # else the update is rejected: c_i stays
            self.ctx.state.put(task.client, {"control": new.numpy()})
        return {}

    def server_step(self, sums: dict[str, np.ndarray], plan: RoundPlan) -> Metrics:
        count = sums["count"][0]  # in units: divides them out
        if count <= 0:
            return {}
        lr = self.config.algorithm.server_lr
        step = torch.from_numpy(sums["update"] / count)
        self.weights = (self.weights.double() + lr * step).float()
        drift = torch.from_numpy(sums["control"] / (self.unit * self.ctx.data.n_clients))
        self.control = (self.control.double() + drift).float()
        return {"control_norm": float(torch.linalg.vector_norm(self.control, dtype=torch.float64))}
