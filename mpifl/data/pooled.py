"""Carve a pooled labelled data set into global test, proxy and per-client splits."""

from __future__ import annotations

import numpy as np
import torch

from mpifl.config.sections import DataConfig
from mpifl.data.federated import Csr, PooledData
from mpifl.data.partition import partition, stratified_split
from mpifl.streams import Purpose, generator


def partition_pool(
    x: torch.Tensor,
    y: torch.Tensor,
    data: DataConfig,
    n_clients: int,
    seed: int,
    test: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> PooledData:
    """Global test and proxy sets first (stratified), then the partition, then local splits.

    With an official `test` set, it is the global test set and data.test_fraction is unused;
    data.proxy_fraction is then a fraction of the training pool. With data.validation > 0,
    a stratified validation set of that fraction of the data is carved from the rest and
    takes the test set's place (tuning never sees the test set). With data.test_seed >= 0
    the global test set is drawn from that seed alone: the same for every run.seed."""
    rng = generator(seed, Purpose.PARTITION)
    if test is None:
        labels = y.numpy()
        split = rng if data.test_seed < 0 else generator(data.test_seed, Purpose.PARTITION, -1, 1)
        rest, global_test = stratified_split(labels, data.test_fraction, split)
        proxy_share = data.proxy_fraction / (1 - data.test_fraction)
    else:
        n_pool = len(y)
        x, y = torch.cat([x, test[0]]), torch.cat([y, test[1]])
        labels = y.numpy()
        rest, global_test = np.arange(n_pool), np.arange(n_pool, len(y))
        proxy_share = data.proxy_fraction
    if data.validation:  # a held-out validation set stands in for the test set
        before = len(rest)
        share = min(data.validation * len(labels) / before, 1.0)
        keep, held_out = stratified_split(labels[rest], share, rng)
        rest, global_test = rest[keep], rest[held_out]
        proxy_share = min(proxy_share * before / max(len(rest), 1), 1.0)  # the same size
    keep, proxy = stratified_split(labels[rest], proxy_share, rng)
    pool, proxy = rest[keep], rest[proxy]
    parts = partition(
        labels[pool],
        n_clients,
        data.partition,
        rng,
        alpha=data.alpha,
        classes_per_client=data.classes_per_client,
        min_samples=data.min_samples,
    )
    train, test = [], []
    for part in parts:
        idx = pool[part]
        tr, te = stratified_split(labels[idx], data.local_test_fraction, rng)
        train.append(idx[tr])
        test.append(idx[te])
    n_classes = int(labels.max()) + 1
    return PooledData(
        x, y, Csr.from_lists(train), Csr.from_lists(test), global_test, proxy, n_classes
    )
