"""Named flat accumulation buffers with an order-independent, exact reduction.

Each contribution `weight * x` is multiplied by `scale * 2^frac_bits` and rounded to an
integer (in float32; the same on every rank). The buffers
are float64 holding integers below 2^53, where addition is exact and therefore
associative: the reduced sum is bitwise the same for any rank count and any client order.
A client's contributions are staged and land all together, or not at all if one is not
finite or out of range.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

from mpifl.comm import Comm

EXACT_BITS = 52  # |sum| stays below 2^52 < 2^53: float64 integer sums are exact

Contribution = torch.Tensor | np.ndarray | Sequence[torch.Tensor]


class UpdateRejected(Exception):
    """A client's contribution is not finite or outside the fixed-point range."""


class Accumulators:
    """Flat float64 buffers of integers, by name. Choose `scale` so that the sum of
    |weight| * scale over a round is at most 1; then a contribution may hold values up to
    2^(52 - frac_bits) in magnitude (4096 at the default 40 bits)."""

    def __init__(
        self,
        sizes: dict[str, int],
        frac_bits: int,
        scale: float = 1.0,
    ) -> None:
        self.frac_bits, self.scale = frac_bits, scale
        self.factor = scale * 2.0**frac_bits
        self._buffers = {n: torch.zeros(size, dtype=torch.float64) for n, size in sizes.items()}
        self._scratch = {n: torch.empty(size, dtype=torch.float32) for n, size in sizes.items()}
        self._staged: list[tuple[str, list[torch.Tensor], float]] = []

    def add(self, name: str, x: Contribution, weight: float = 1.0) -> None:
        """Stage `weight * x` for buffer `name`; x is one tensor or a sequence of tensors
        (e.g. a model's parameters) whose sizes add up to the buffer's."""
        parts = [torch.as_tensor(x)] if isinstance(x, torch.Tensor | np.ndarray) else list(x)
        total = sum(p.numel() for p in parts)
        if total != self._buffers[name].numel():
            raise ValueError(
                f"{name}: got {total} values, buffer holds {self._buffers[name].numel()}"
            )
        self._staged.append((name, parts, float(weight)))

    def commit(self) -> None:
        """Add the staged contributions; raise UpdateRejected (adding nothing) if one is bad."""
        staged, self._staged = self._staged, []
        names = [name for name, _, _ in staged]
        if len(set(names)) != len(names):
            raise ValueError(f"one client staged the same accumulator twice: {names}")
        for name, parts, weight in staged:
            self._quantise(name, parts, weight)
        for name in names:
            self._buffers[name].add_(self._scratch[name])

    def _quantise(self, name: str, parts: Iterable[torch.Tensor], weight: float) -> None:
        scratch, offset = self._scratch[name], 0
        c = weight * self.factor
        with torch.no_grad():
            for part in parts:
                n = part.numel()
                torch.mul(part.detach().reshape(-1), c, out=scratch[offset : offset + n])
                offset += n
            scratch.round_()
            if scratch.numel():
                low, high = torch.aminmax(scratch)
                bound = 2.0**EXACT_BITS * abs(weight) * self.scale
                if not (-bound < float(low) and float(high) < bound):
                    what = "non-finite values" if not torch.isfinite(scratch).all() else "values"
                    raise UpdateRejected(f"{what} in {name} outside the fixed-point range")

    def discard(self) -> None:
        """Drop staged contributions."""
        self._staged = []

    def merge(self, other: Accumulators) -> None:
        """Add another's committed sums (same buffers and scale): exact."""
        for name, buf in self._buffers.items():
            buf.add_(other._buffers[name])

    def raw_sums(self, comm: Comm) -> dict[str, np.ndarray]:
        """The fixed-point integer sums over ranks (exact), as stored by a checkpoint."""
        return {name: comm.allreduce_sum(buf.numpy().copy()) for name, buf in self._buffers.items()}

    def add_raw(self, name: str, raw: np.ndarray) -> None:
        """Add fixed-point integer sums from `raw_sums` (of the same scale)."""
        self._buffers[name].add_(torch.from_numpy(np.asarray(raw, dtype=np.float64)))

    def reduce(self, comm: Comm) -> dict[str, np.ndarray]:
        """Sum over ranks (exactly) and return float64 arrays of sum(weight * x)."""
        return {
            name: comm.allreduce_sum(buf.numpy()) / self.factor
            for name, buf in self._buffers.items()
        }
