"""Staleness weights of asynchronous aggregation (Xie et al. 2019, FedAsync; FedBuff uses
the polynomial one with a = 1/2): how much an update trained on a model `staleness`
server steps old counts."""

from __future__ import annotations

import numpy as np


def staleness_weight(kind: str, a: float, b: float, staleness: np.ndarray) -> np.ndarray:
    """s(tau): constant 1; polynomial (1 + tau)^-a; hinge 1 for tau <= b, else
    1 / (a (tau - b) + 1). Every one is 1 at tau = 0 and at most 1."""
    tau = np.asarray(staleness, dtype=np.float64)
    if kind == "constant":
        return np.ones_like(tau)
    if kind == "polynomial":
        return (1.0 + tau) ** -a
    return 1.0 / (a * np.maximum(tau - b, 0.0) + 1.0)  # (exactly 1 up to b)
