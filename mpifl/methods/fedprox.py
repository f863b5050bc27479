"""FedProx (docs/algorithms.md section 10): FedAvg whose clients minimise
F_k(w) + mu/2 ||w - W||^2, run with round.partial_work (a straggler sends the steps it did)."""

from __future__ import annotations

from mpifl.kit import algorithms
from mpifl.methods.fedavg import FedAvg


class FedProx(FedAvg):
    """FedAvg with the proximal term mu/2 ||w - W||^2 in every client's local objective."""

    name = "fedprox"
    fields = algorithms.FEDPROX

    def proximal_mu(self) -> float:
        return self.config.algorithm.mu
