"""Asynchronous aggregation on the virtual clock (docs/algorithms.md section 7).

FedBuff (Nguyen et al. 2022): clients train concurrently on whatever model the server
had when they started; the server applies a step every K arrivals,

    W <- W + eta_s * sum_i n_i s(tau_i) (W_i - W_{v_i}) / sum_i n_i,

where W_{v_i} is the model client i trained from and tau_i its staleness. FedAsync (Xie
et al. 2019) applies each arrival at once, mixed in with weight alpha s(tau):

    W <- (1 - alpha s(tau)) W + alpha s(tau) W_i.

The engine (mpifl/engine/asynchronous.py) schedules dispatches and arrivals and routes
each update to the step that applies it; `asynchronous.concurrency` and
`asynchronous.dispatch` set the schedule.
"""

from __future__ import annotations

import numpy as np
import torch

from mpifl.kit import algorithms
from mpifl.kit.accumulate import Accumulators
from mpifl.kit.aggregate import average_update
from mpifl.kit.method import ClientTask, MethodContext, Metrics
from mpifl.kit.staleness import staleness_weight
from mpifl.kit.workload import RoundPlan
from mpifl.methods.fedavg import FedAvg


class FedBuff(FedAvg):
    """Buffered asynchronous FedAvg: a server step per K arrivals, stale updates
    weighted down."""

    name = "fedbuff"
    asynchronous = True
    fields = algorithms.FEDBUFF

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        self.buffer = self.config.algorithm.buffer

    def staleness_weights(self, staleness: np.ndarray) -> np.ndarray:
        alg = self.config.algorithm
        return staleness_weight(alg.staleness, alg.staleness_a, alg.staleness_b, staleness)

    def accumulator_sizes(self) -> dict[str, int]:
        """sum n s W_i, sum n s W_{v_i} (the models they started from), sum n, sum n s,
        and sum n over stale updates."""
        p = self.weights.numel()
        return {"model": p, "base": p, "weight": 1, "scaled": 1, "stale": 1}

    def client_finish(
        self, task: ClientTask, start: torch.Tensor, trained: torch.Tensor, acc: Accumulators
    ) -> Metrics:
        """n s W_i, n s W_v, n, n s, and n if stale."""
        n, s = len(task.train[0]), task.update_weight
        acc.add("model", trained, n * s)
        acc.add("base", self.weights, n * s)  # the model it started from: this round's
        acc.add("weight", torch.ones(1), n)
        acc.add("scaled", torch.ones(1), n * s)
        if task.stale:
            acc.add("stale", torch.ones(1), n)
        return {}

    def server_step(self, sums: dict[str, np.ndarray], plan: RoundPlan) -> Metrics:
        """W + eta_s sum n s (W_i - W_v) / sum n; with no stale update it is FedAvg's
        step, computed as FedAvg computes it."""
        weight, lr = sums["weight"][0], self.config.algorithm.server_lr
        if weight <= 0:
            return {}
        if sums["stale"][0] == 0:  # every W_v is W and s = 1: FedAvg
            self.weights = average_update(self.weights, sums["model"], weight, lr)
        else:
            step = torch.from_numpy((sums["model"] - sums["base"]) / weight)
            self.weights = (self.weights.double() + lr * step).float()
        return {"stale_fraction": float(sums["stale"][0] / weight)}


class FedAsync(FedBuff):
    """Asynchronous FedAvg: every arrival is mixed into the server model at once."""

    name = "fedasync"
    fields = algorithms.FEDASYNC

    def __init__(self, ctx: MethodContext) -> None:
        FedAvg.__init__(self, ctx)
        self.buffer = 1

    def server_step(self, sums: dict[str, np.ndarray], plan: RoundPlan) -> Metrics:
        """W <- (1 - alpha s) W + alpha s W_i, from sum n s W_i, sum n and sum n s."""
        weight, alpha = sums["weight"][0], self.config.algorithm.mixing
        if weight <= 0:
            return {}
        s = sums["scaled"][0] / weight
        mixed = torch.from_numpy(sums["model"] / weight)  # s W_i
        self.weights = ((1 - alpha * s) * self.weights.double() + alpha * mixed).float()
        return {"stale_fraction": float(sums["stale"][0] / weight), "mixing": alpha * s}
