"""Counter-based random streams."""

from __future__ import annotations

import numpy as np

from mpifl.streams import Purpose, generator, hash64, torch_generator, uniform


def test_uniform_is_keyed_not_stateful():
    ids = np.arange(1000)
    a = uniform(1, Purpose.AVAILABILITY, 3, ids)
    b = uniform(1, Purpose.AVAILABILITY, 3, ids[::-1])[::-1]
    assert np.array_equal(a, b)
    assert a.min() >= 0.0 and a.max() < 1.0
    assert abs(a.mean() - 0.5) < 0.05


def test_keys_give_distinct_streams():
    ids = np.arange(100)
    base = hash64(0, Purpose.AVAILABILITY, 0, ids)
    for other in (
        hash64(1, Purpose.AVAILABILITY, 0, ids),
        hash64(0, Purpose.SAMPLE, 0, ids),
        hash64(0, Purpose.AVAILABILITY, 1, ids),
    ):
        assert not np.any(base == other)
    assert len(np.unique(base)) == len(ids)


def test_generators_are_reproducible():
    assert np.array_equal(
        generator(5, Purpose.SAMPLE, 2).random(4), generator(5, Purpose.SAMPLE, 2).random(4)
    )
    import torch

    a = torch.randperm(10, generator=torch_generator(5, Purpose.TRAIN, 2, 7))
    b = torch.randperm(10, generator=torch_generator(5, Purpose.TRAIN, 2, 7))
    assert torch.equal(a, b)
