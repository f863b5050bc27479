"""Federated data sets: built-in sources, real formats, partitioners, per-client splits."""

from __future__ import annotations

import numpy as np
import torch

from mpifl.config.schema import FROM_PATH
from mpifl.config.sections import DataConfig
from mpifl.data.checks import check_pool, natural_count
from mpifl.data.federated import FederatedData
from mpifl.errors import ConfigError, InputError, describe

NATURAL = ("femnist", "tff")


def build_dataset(data: DataConfig, n_clients: int, seed: int) -> FederatedData:
    """The federated data set that `data` (the config section) describes.

    n_clients = 0 asks for a natural partition's own client count."""
    for key, off in (("validation", 0.0), ("test_seed", -1)):
        if getattr(data, key) != off and data.name in (*NATURAL, "synthetic", "w1"):
            why = f"works with pooled data sets only (digits, mnist5k, arrays), not {data.name!r}"
            raise ConfigError(f"data.{key}", getattr(data, key), why)
    if data.name in NATURAL:
        return natural_count(_from_file(data, n_clients, seed), n_clients, data.name)
    if data.name == "python":
        from mpifl.data.plugin import plugin_data

        return plugin_data(data, n_clients, seed)
    if n_clients == 0:
        raise ConfigError("fleet.clients", 0, f"must be >= 1 for data.name = '{data.name}'")
    if data.name in FROM_PATH:
        return _from_file(data, n_clients, seed)
    if data.name == "synthetic":
        from mpifl.data.synthetic import SyntheticData

        return SyntheticData(data, n_clients, seed)
    if data.name == "w1":
        from mpifl.data.w1 import W1Data

        return W1Data(data, n_clients)
    return _pooled(data, n_clients, seed)


def _pooled(data: DataConfig, n_clients: int, seed: int) -> FederatedData:
    """A pooled source's arrays, checked, then partitioned over the clients."""
    from mpifl.data.pooled import partition_pool

    x, y, test = _pooled_arrays(data)
    where = f"data.path = {data.path}" if data.path else f"data.name = {data.name}"
    check_pool(x, y, test, where)
    return partition_pool(x, y, data, n_clients, seed, test)


def _from_file(data: DataConfig, n_clients: int, seed: int) -> FederatedData:
    """A data set read from a user's file: whatever is wrong with the file (crafted,
    truncated, the wrong format) is one InputError naming it, never a traceback."""
    try:
        return _natural(data, seed) if data.name in NATURAL else _pooled(data, n_clients, seed)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001  (untrusted input: any failure is the file's)
        raise InputError(
            f"data error: data.path = {data.path}: not readable as data.name = "
            f"'{data.name}' ({describe(exc)})"
        ) from None


def _images(x: np.ndarray) -> torch.Tensor:
    """uint8 images to float32 in [0, 1]; (N, H, W) gains a channel axis."""
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(x[:, None] if x.ndim == 3 else x))


def _pooled_arrays(data: DataConfig):
    """(x, y, official test set or None) of a pooled source."""
    if data.name == "digits":
        from mpifl.data.digits import load_digits

        return (*load_digits(), None)
    if data.name == "mnist5k":
        from mpifl.data.mnist5k import load_mnist5k

        return (*load_mnist5k(), None)
    if data.name == "npz":
        from mpifl.data.arrays import load_npz

        return (*load_npz(data.path), None)
    if data.name == "mnist":
        from mpifl.data.formats.idx import load_mnist

        tx, ty, vx, vy = load_mnist(data.path)
    else:
        from mpifl.data.formats.cifar import load_cifar

        tx, ty, vx, vy = load_cifar(data.path, 10 if data.name == "cifar10" else 100)
    label = lambda y: torch.from_numpy(y.astype(np.int64))  # noqa: E731
    return _images(tx), label(ty), (_images(vx), label(vy))


def _natural(data: DataConfig, seed: int) -> FederatedData:
    from mpifl.data.natural import checked_writers

    if data.name == "femnist":
        from mpifl.data.formats.leaf import load_leaf

        writers = list(load_leaf(data.path).values())
    else:
        from mpifl.data.formats.tff import load_tff

        writers = []
        for x, y in load_tff(data.path, data.tff_x, data.tff_y).values():
            images = _images(x).numpy()
            writers.append((images, y.astype(np.int64), images[:0], y[:0].astype(np.int64)))
    return checked_writers(writers, data, seed, f"data.path = {data.path}")


__all__ = ["NATURAL", "FederatedData", "build_dataset"]
