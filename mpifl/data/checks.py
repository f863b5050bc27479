"""Checks on labelled arrays read from users' files, before anything uses them."""

from __future__ import annotations

import math

import psutil
import torch

from mpifl.data.federated import FederatedData, Split
from mpifl.errors import ConfigError, InputError

MAX_LABELS = 2**16  # classes a data set may have (labels index a softmax)


def check_labelled(x: torch.Tensor, y: torch.Tensor, where: str, allow_empty: bool = False) -> None:
    """InputError unless x and y hold the same number of samples (at least one), y holds
    integer labels in [0, MAX_LABELS) and x is finite as float32."""
    if len(x) != len(y) or (len(x) == 0 and not allow_empty):
        raise InputError(f"data error: {where}: {len(x)} inputs but {len(y)} labels")
    if y.dtype.is_floating_point or y.dtype == torch.bool or y.dim() != 1:
        raise InputError(f"data error: {where}: labels must be a 1-D array of integers")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= MAX_LABELS):
        raise InputError(f"data error: {where}: labels must be integers in [0, {MAX_LABELS - 1}]")
    if not bool(torch.isfinite(x).all()):
        raise InputError(f"data error: {where}: inputs hold NaN or infinite values (as float32)")


def check_pool(x: torch.Tensor, y: torch.Tensor, test: Split | None, where: str) -> None:
    """InputError unless a pooled source's arrays (and official test set) are labelled
    data."""
    check_labelled(x, y, where)
    if test is not None:
        check_labelled(*test, f"{where} (test set)")


def natural_count(dataset: FederatedData, n_clients: int, source: str) -> FederatedData:
    """A natural partition, if fleet.clients (`n_clients`) is 0 or its client count."""
    if n_clients not in (0, dataset.n_clients):
        raise ConfigError(
            "fleet.clients",
            n_clients,
            f"must be 0 or {dataset.n_clients}: data.name = '{source}' has a natural "
            "partition (one client per writer, after held-out writers)",
        )
    return dataset


BYTES_PER_CLIENT = 256  # profiles, sizes, plan and record rows held per client, generously
CACHED_CLIENTS = 16  # generated clients' data kept at once (see GeneratedData)


def check_fits(n_clients: int, data: FederatedData | None = None) -> None:
    """ConfigError if the per-client records of `n_clients`, or (given the data set) the
    largest client's samples, cannot be held in this machine's memory."""
    total = psutil.virtual_memory().total
    if n_clients * BYTES_PER_CLIENT > total // 2:
        raise ConfigError(
            "fleet.clients",
            n_clients,
            f"needs ~{n_clients * BYTES_PER_CLIENT / 2**30:.1f} GiB of per-client records, "
            f"more than half of this machine's {total / 2**30:.1f} GiB",
        )
    if data is None or data.n_clients == 0:
        return
    largest = int((data.n_train + data.n_test).max())
    sample_bytes = 4 * math.prod(data.input_shape)
    if largest * sample_bytes * CACHED_CLIENTS > total // 2:
        raise ConfigError(
            "data",
            f"{largest} samples of {sample_bytes} bytes",
            f"the largest client's data does not fit this machine's {total / 2**30:.1f} GiB "
            "(with the clients kept at once): use fewer samples per client",
        )
