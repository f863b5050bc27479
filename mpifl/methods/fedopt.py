"""FedAvgM and FedOpt (docs/algorithms.md section 8): FedAvg's clients, and a server that
applies the averaged update Delta = sum_k n_k W_k / sum_k n_k - W with an optimizer
(mpifl.kit.server_optimizers): momentum (Hsu et al. 2019), Adagrad, Adam or Yogi
(Reddi et al., ICLR 2021)."""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

import numpy as np

from mpifl.kit import algorithms
from mpifl.kit.method import MethodContext, Metrics
from mpifl.kit.server_optimizers import (
    Adagrad,
    Adam,
    Momentum,
    ServerOptimizer,
    Yogi,
    pseudo_gradient,
)
from mpifl.kit.workload import RoundPlan
from mpifl.methods.fedavg import FedAvg


class FedOpt(FedAvg):
    """FedAvg whose server steps W with an optimizer on Delta; no trained client, no step."""

    checkpointed = ("weights", "server_state")

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        self.optimizer = self.server_optimizer()
        self.server_state = self.optimizer.initial_state(self.weights.numel())

    @abstractmethod
    def server_optimizer(self) -> ServerOptimizer:
        """The optimizer, from the method's [algorithm] keys."""

    def server_step(self, sums: dict[str, np.ndarray], plan: RoundPlan) -> Metrics:
        delta = pseudo_gradient(self.weights, sums["model"], sums["weight"][0])
        if delta is not None:
            change, self.server_state = self.optimizer.step(delta, self.server_state)
            self.weights = (self.weights.double() + change).float()
        return {}


class FedAvgM(FedOpt):
    """Server momentum: v <- beta v + Delta; W <- W + eta v."""

    name = "fedavgm"
    fields = algorithms.FEDAVGM

    def server_optimizer(self) -> ServerOptimizer:
        alg = self.config.algorithm
        return Momentum(alg.server_lr, alg.server_momentum)


class FedAdagrad(FedOpt):
    """FedOpt with Adagrad: v <- v + Delta^2."""

    name = "fedadagrad"
    fields = algorithms.FEDADAGRAD

    def server_optimizer(self) -> ServerOptimizer:
        alg = self.config.algorithm
        return Adagrad(alg.server_lr, alg.beta1, alg.tau)


class _DecayingSecondMoment(FedOpt):
    """FedOpt with a second moment that decays by beta2 (Adam's rule or Yogi's)."""

    rule: ClassVar[type[Adam] | type[Yogi]]
    fields = algorithms.FEDADAM_YOGI

    def server_optimizer(self) -> ServerOptimizer:
        alg = self.config.algorithm
        return self.rule(alg.server_lr, alg.beta1, alg.tau, alg.beta2)


class FedAdam(_DecayingSecondMoment):
    """FedOpt with Adam: v <- beta2 v + (1 - beta2) Delta^2."""

    name = "fedadam"
    rule = Adam


class FedYogi(_DecayingSecondMoment):
    """FedOpt with Yogi: v <- v - (1 - beta2) Delta^2 sign(v - Delta^2)."""

    name = "fedyogi"
    rule = Yogi
