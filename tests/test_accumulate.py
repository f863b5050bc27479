"""Exact, order-independent accumulation and client rejection."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mpifl.kit.accumulate import Accumulators, UpdateRejected


class OneRank:
    rank, size = 0, 1

    @staticmethod
    def allreduce_sum(buf):
        return buf


def _sum(contribs, order, split=1):
    """Sum contributions in `order`, spread over `split` partial accumulators."""
    parts = [Accumulators({"v": 1000}, 40, scale=1 / 5000) for _ in range(split)]
    for j, i in enumerate(order):
        x, w = contribs[i]
        parts[j % split].add("v", x, w)
        parts[j % split].commit()
    total = sum(p._buffers["v"] for p in parts)
    return total.numpy().astype(np.float64) / parts[0].factor


def test_sum_is_bitwise_independent_of_order_and_partition():
    rng = np.random.default_rng(0)
    contribs = [
        (torch.from_numpy(rng.normal(0, 1e-2, 1000).astype(np.float32)), int(rng.integers(1, 100)))
        for _ in range(50)
    ]
    a = _sum(contribs, range(50))
    b = _sum(contribs, rng.permutation(50), split=2)
    c = _sum(contribs, rng.permutation(50), split=4)
    assert a.tobytes() == b.tobytes() == c.tobytes()
    exact = sum(w * x.double().numpy() for x, w in contribs)
    # each product is rounded in float32 (2^-24 relative, twice: the factor and the
    # product) and to the fixed-point grid (2^-40, unscaled by 1/5000); the sum is exact
    magnitude = sum(abs(w) * np.abs(x.double().numpy()) for x, w in contribs)
    resolution = 2.0**-40 * 5000
    assert np.all(np.abs(a - exact) <= magnitude * 2.0**-23 + 50 * resolution / 2)


def test_non_finite_client_adds_nothing():
    acc = Accumulators({"a": 3, "b": 1}, 40, scale=0.5)
    acc.add("a", torch.ones(3), 1.0)
    acc.add("b", torch.tensor([1.0]), 1.0)
    acc.commit()
    acc.add("a", torch.ones(3), 1.0)
    acc.add("b", torch.tensor([float("nan")]), 1.0)
    with pytest.raises(UpdateRejected, match="non-finite"):
        acc.commit()
    sums = acc.reduce(OneRank())
    assert np.array_equal(sums["a"], np.ones(3)) and np.array_equal(sums["b"], [1.0])


def test_out_of_range_contribution_is_rejected():
    acc = Accumulators({"a": 1}, 40, scale=1.0)
    acc.add("a", torch.tensor([2.0**23]), 1.0)
    with pytest.raises(UpdateRejected, match="range"):
        acc.commit()


def test_size_mismatch_is_a_bug_not_a_rejection():
    acc = Accumulators({"a": 2}, 40)
    with pytest.raises(ValueError, match="buffer holds 2"):
        acc.add("a", torch.ones(3))
