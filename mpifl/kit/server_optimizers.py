"""Server optimizers on the flat model (docs/algorithms.md section 8): FedAvgM's momentum
(Hsu et al. 2019) and FedOpt's adaptive steps (Reddi et al., ICLR 2021, Algorithm 2).

The server treats Delta = sum_k n_k W_k / sum_k n_k - W, the averaged client update, as a
pseudo-gradient step and returns the change of W. An optimizer is a frozen set of
hyper-parameters; its state is a list of float64 tensors the method keeps and
checkpoints. Only correctly rounded IEEE operations (+, -, *, /, sqrt) and sign are
used, so every rank and machine computes the same bits. Plain SGD, W + eta Delta, is
FedAvg's `average_update`; `Momentum` with beta = 0 equals it bit for bit.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch

State = list[torch.Tensor]


def pseudo_gradient(weights: torch.Tensor, num: np.ndarray, den: float) -> torch.Tensor | None:
    """Delta = num / den - W in float64 (num = sum_k n_k W_k, den = sum_k n_k); None when
    no client trained (den = 0)."""
    if den <= 0:
        return None
    return torch.from_numpy(num / den) - weights.double()


class ServerOptimizer(ABC):
    """One server step: the change of W from Delta and the optimizer's state."""

    @abstractmethod
    def initial_state(self, size: int) -> State:
        """The state before the first step, for a model of `size` parameters."""

    @abstractmethod
    def step(self, delta: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """(the change of W, the new state) for the averaged update `delta`."""


@dataclass(frozen=True)
class Momentum(ServerOptimizer):
    """FedAvgM: v <- beta v + Delta; W <- W + eta v (v_{-1} = 0)."""

    lr: float
    beta: float

    def initial_state(self, size: int) -> State:
        return [torch.zeros(size, dtype=torch.float64)]

    def step(self, delta: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        velocity = self.beta * state[0] + delta
        return self.lr * velocity, [velocity]


@dataclass(frozen=True)
class Adaptive(ServerOptimizer):
    """FedOpt's adaptive step, without bias correction:
    m <- beta1 m + (1 - beta1) Delta; v <- second_moment(v, Delta^2);
    W <- W + eta m / (sqrt(v) + tau), from m_{-1} = 0 and v_{-1} = tau^2."""

    lr: float
    beta1: float
    tau: float

    def initial_state(self, size: int) -> State:
        m = torch.zeros(size, dtype=torch.float64)
        return [m, torch.full((size,), self.tau * self.tau, dtype=torch.float64)]

    def step(self, delta: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        m = self.beta1 * state[0] + (1 - self.beta1) * delta
        v = self.second_moment(state[1], delta * delta)
        return self.lr * m / (v.sqrt() + self.tau), [m, v]

    @abstractmethod
    def second_moment(self, v: torch.Tensor, square: torch.Tensor) -> torch.Tensor:
        """v_t from v_{t-1} and Delta_t^2."""


class Adagrad(Adaptive):
    """FedAdagrad: v <- v + Delta^2."""

    def second_moment(self, v: torch.Tensor, square: torch.Tensor) -> torch.Tensor:
        return v + square


@dataclass(frozen=True)
class Adam(Adaptive):
    """FedAdam: v <- beta2 v + (1 - beta2) Delta^2."""

    beta2: float

    def second_moment(self, v: torch.Tensor, square: torch.Tensor) -> torch.Tensor:
        return self.beta2 * v + (1 - self.beta2) * square


@dataclass(frozen=True)
class Yogi(Adaptive):
    """FedYogi: v <- v - (1 - beta2) Delta^2 sign(v - Delta^2)."""

    beta2: float

    def second_moment(self, v: torch.Tensor, square: torch.Tensor) -> torch.Tensor:
        return v - (1 - self.beta2) * square * torch.sign(v - square)
