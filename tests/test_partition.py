"""Partitioners and stratified splits."""

from __future__ import annotations

import numpy as np
import pytest

from mpifl.data.partition import partition, stratified_split
from mpifl.errors import ConfigError

LABELS = np.repeat(np.arange(10), 100)


def _check_disjoint_cover(parts, n):
    flat = np.concatenate(parts)
    assert len(flat) == len(np.unique(flat))
    assert flat.min() >= 0 and flat.max() < n


@pytest.mark.parametrize("scheme", ["iid", "dirichlet", "shards", "fedmrl"])
def test_partitions_are_disjoint_and_meet_min_samples(scheme):
    rng = np.random.default_rng(0)
    parts = partition(LABELS, 40, scheme, rng, alpha=0.5, classes_per_client=2, min_samples=3)
    assert len(parts) == 40
    _check_disjoint_cover(parts, len(LABELS))
    assert min(len(p) for p in parts) >= 3
    if scheme == "iid":
        assert sum(len(p) for p in parts) == len(LABELS)


@pytest.mark.parametrize("scheme", ["shards", "fedmrl"])
def test_class_subsets_hold_k_classes(scheme):
    parts = partition(LABELS, 30, scheme, np.random.default_rng(1), classes_per_client=2)
    assert all(len(np.unique(LABELS[p])) == 2 for p in parts)


def test_fedmrl_label_mix_follows_uniform_shares():
    parts = partition(LABELS, 40, "fedmrl", np.random.default_rng(2), classes_per_client=2)
    sizes = {len(p) for p in parts}
    assert max(sizes) - min(sizes) <= 1  # equal client sizes, up to rounding
    for p in parts:
        _, counts = np.unique(LABELS[p], return_counts=True)
        fractions = counts / counts.sum()
        assert np.all(fractions >= 0.4 - 1 / counts.sum())
        assert np.all(fractions <= 0.6 + 1 / counts.sum())


def test_shards_split_each_class_equally():
    parts = partition(LABELS, 30, "shards", np.random.default_rng(3), classes_per_client=2)
    for c in range(10):
        counts = [np.sum(LABELS[p] == c) for p in parts if np.any(LABELS[p] == c)]
        assert max(counts) - min(counts) <= 1


def test_dirichlet_small_alpha_is_skewed():
    rng = np.random.default_rng(0)
    skewed = partition(LABELS, 20, "dirichlet", rng, alpha=0.05, min_samples=1)
    even = partition(LABELS, 20, "dirichlet", rng, alpha=100.0, min_samples=1)

    def mean_classes(parts):
        return np.mean([len(np.unique(LABELS[p])) for p in parts])

    assert mean_classes(skewed) < mean_classes(even)


def test_too_many_clients_is_a_config_error():
    with pytest.raises(ConfigError, match="fleet.clients"):
        partition(LABELS, 600, "iid", np.random.default_rng(0), min_samples=2)
    with pytest.raises(ConfigError, match="data.classes_per_client"):
        partition(LABELS, 10, "shards", np.random.default_rng(0), classes_per_client=11)


def test_stratified_split_keeps_label_mix():
    rest, take = stratified_split(LABELS, 0.2, np.random.default_rng(0))
    assert len(np.intersect1d(rest, take)) == 0 and len(rest) + len(take) == len(LABELS)
    assert np.all(np.bincount(LABELS[take]) == 20)
    single = np.array([3])
    rest, take = stratified_split(single, 0.5, np.random.default_rng(0))
    assert len(take) == 0 and len(rest) == 1
