"""Natural partitions (one client per writer / user): the client count follows the data.

Whole writers are held out for the global test set (data.test_fraction of them) and the
proxy set (data.proxy_fraction); every other writer is a client. A writer's own test
samples (LEAF's test folder) are its test split; otherwise a stratified split is made.
"""

from __future__ import annotations

import numpy as np
import torch

from mpifl.config.sections import DataConfig
from mpifl.data.checks import check_labelled
from mpifl.data.federated import Csr, PooledData
from mpifl.data.partition import stratified_split
from mpifl.errors import ConfigError
from mpifl.streams import Purpose, generator

Writer = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def checked_writers(writers: list[Writer], data: DataConfig, seed: int, where: str) -> PooledData:
    """The natural partition of `writers`, once every writer's arrays are checked to be
    labelled data."""
    for i, (tx, ty, vx, vy) in enumerate(writers):
        at = f"{where} (client {i})"
        check_labelled(torch.as_tensor(tx), torch.as_tensor(ty), at, allow_empty=True)
        check_labelled(torch.as_tensor(vx), torch.as_tensor(vy), at, allow_empty=True)
    return partition_writers(writers, data, seed)


def partition_writers(writers: list[Writer], data: DataConfig, seed: int) -> PooledData:
    """Pool the writers' arrays and index clients, global test and proxy by writer."""
    rng = generator(seed, Purpose.PARTITION)
    n = len(writers)
    n_test = max(1, int(round(data.test_fraction * n)))
    n_proxy = int(round(data.proxy_fraction * n))
    if n - n_test - n_proxy < 1:
        raise ConfigError(
            "data.test_fraction", data.test_fraction, f"leaves no client among {n} writers"
        )
    order = rng.permutation(n)
    held_test, held_proxy = order[:n_test], order[n_test : n_test + n_proxy]
    clients = np.sort(order[n_test + n_proxy :])
    xs, ys, spans, start = [], [], [], 0
    for x_train, y_train, x_test, y_test in writers:
        xs += [x_train, x_test]
        ys += [y_train, y_test]
        spans.append((start, start + len(x_train), start + len(x_train) + len(x_test)))
        start = spans[-1][2]

    def everything(ids: np.ndarray) -> np.ndarray:
        return np.concatenate([np.arange(spans[w][0], spans[w][2]) for w in ids])

    y_all = np.concatenate(ys)
    train, test = [], []
    for w in clients:
        lo, mid, hi = spans[w]
        if hi > mid:
            train.append(np.arange(lo, mid))
            test.append(np.arange(mid, hi))
        else:
            tr, te = stratified_split(y_all[lo:mid], data.local_test_fraction, rng)
            train.append(lo + tr)
            test.append(lo + te)
    x = torch.from_numpy(np.ascontiguousarray(np.concatenate(xs), dtype=np.float32))
    proxy = everything(held_proxy) if n_proxy else np.empty(0, np.int64)
    return PooledData(
        x,
        torch.from_numpy(y_all.astype(np.int64)),
        Csr.from_lists(train),
        Csr.from_lists(test),
        everything(held_test),
        proxy,
        int(y_all.max()) + 1,
    )
