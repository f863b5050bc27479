"""Named flat accumulation buffers with an order-independent, exact reduction.

Each contribution `weight * x` is rounded once to int64 fixed point (2^-frac_bits
resolution, after multiplying by `scale`); integer sums are associative, so the reduced
result is bitwise the same for any rank count and any client order. A client's
contributions are staged and land all together, or not at all if one is not finite.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mpifl.comm import Comm


class UpdateRejected(Exception):
    """A client's contribution is not finite or outside the fixed-point range."""


class Accumulators:
    """Flat int64 buffers by name. `scale` should make sum(|weight| * scale) <= 1."""

    def __init__(self, sizes: dict[str, int], frac_bits: int, scale: float = 1.0) -> None:
        self.frac_bits, self.scale = frac_bits, scale
        self.factor = scale * 2.0**frac_bits
        self.limit = 2.0 ** (62 - frac_bits)  # largest |x| a contribution may hold
        self._buffers = {name: torch.zeros(size, dtype=torch.int64) for name, size in sizes.items()}
        self._staged: list[tuple[str, torch.Tensor, float]] = []

    def add(self, name: str, x: torch.Tensor | np.ndarray, weight: float = 1.0) -> None:
        """Stage `weight * x` for buffer `name` (x is flattened; sizes must match)."""
        t = torch.as_tensor(x).detach().reshape(-1)
        if t.numel() != self._buffers[name].numel():
            raise ValueError(
                f"{name}: got {t.numel()} values, buffer holds {self._buffers[name].numel()}"
            )
        self._staged.append((name, t, float(weight)))

    def commit(self) -> None:
        """Add the staged contributions; raise UpdateRejected (adding nothing) if one is bad."""
        staged, self._staged = self._staged, []
        quantised = []
        for name, t, weight in staged:
            peak = float(t.abs().max()) if t.numel() else 0.0
            if not math.isfinite(peak):
                raise UpdateRejected(f"non-finite values in {name}")
            if peak * abs(weight) * self.scale >= self.limit:
                raise UpdateRejected(f"{name} exceeds the fixed-point range (|x| = {peak:.3g})")
            quantised.append((name, t.double().mul_(weight * self.factor).round_().long()))
        for name, q in quantised:
            self._buffers[name].add_(q)

    def discard(self) -> None:
        """Drop staged contributions."""
        self._staged = []

    def reduce(self, comm: Comm) -> dict[str, np.ndarray]:
        """Sum over ranks (exactly) and return float64 arrays of sum(weight * x)."""
        out = {}
        for name, buf in self._buffers.items():
            total = comm.allreduce_sum(buf.numpy())
            out[name] = total.astype(np.float64) / self.factor
        return out
