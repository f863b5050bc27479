"""A user's data set: `data.name = "python"`, `data.factory = "package.module:function"`.

The function is called as `function(seed=run.seed)` on every rank and returns either
- pooled arrays, partitioned like a built-in source by data.partition: a tuple (x, y), or
  (x, y, x_test, y_test) with an official test set; or
- a natural partition: a list with one entry per client (writer, device, user), each
  (x, y) or (x_train, y_train, x_test, y_test); whole clients are held out for the
  global test and proxy sets, as for FEMNIST.
Inputs are arrays of numbers, shapes kept (uint8 is scaled to [0, 1]); labels integers.
"""

from __future__ import annotations

import numpy as np
import torch

from mpifl.config.sections import DataConfig
from mpifl.data.checks import check_pool, natural_count
from mpifl.data.federated import FederatedData
from mpifl.data.natural import checked_writers
from mpifl.data.pooled import partition_pool
from mpifl.errors import ConfigError, InputError, describe
from mpifl.plugins import load_plugin

SHAPES = (
    "must return (x, y), (x, y, x_test, y_test), or a list of clients each (x, y) or "
    "(x_train, y_train, x_test, y_test)"
)


def plugin_data(data: DataConfig, n_clients: int, seed: int) -> FederatedData:
    """The federated data set the user's function `data.factory` returns."""
    function = load_plugin("data.factory", data.factory)
    if not callable(function):
        raise ConfigError("data.factory", data.factory, "must name a function (seed) -> data")
    try:
        out = function(seed=seed)
    except Exception as exc:  # noqa: BLE001  (the user's code: any failure is theirs)
        raise InputError(
            f"data error: data.factory = {data.factory}: the function failed ({describe(exc)})"
        ) from None
    where = f"data.factory = {data.factory}"
    if isinstance(out, list) and out and all(_arrays(c) for c in out):
        writers = [_writer(client, where, i) for i, client in enumerate(out)]
        _same_shapes([w[k] for w in writers for k in (0, 2)], where)
        return natural_count(checked_writers(writers, data, seed, where), n_clients, "python")
    if not _arrays(out):
        raise ConfigError("data.factory", data.factory, SHAPES)
    if n_clients == 0:
        raise ConfigError("fleet.clients", 0, "must be >= 1: data.factory returned pooled arrays")
    x, y = _inputs(out[0], where), _labels(out[1], where)
    test = (_inputs(out[2], where), _labels(out[3], where)) if len(out) == 4 else None
    _same_shapes([x] if test is None else [x, test[0]], where)
    check_pool(x, y, test, where)
    return partition_pool(x, y, data, n_clients, seed, test)


def _same_shapes(inputs: list, where: str) -> None:
    """InputError unless every input array has the same sample shape."""
    shapes = {tuple(x.shape[1:]) for x in inputs}
    if len(shapes) > 1:
        raise InputError(
            f"data error: {where}: inputs of different shapes {sorted(shapes)[:3]} "
            "(every sample must have one shape)"
        )


def _arrays(value: object) -> bool:
    return isinstance(value, tuple | list) and len(value) in (2, 4)


def _writer(client: tuple, where: str, i: int) -> tuple[np.ndarray, ...]:
    """(x_train, y_train, x_test, y_test) numpy arrays of client i (empty test split if
    it gave none)."""
    at = f"{where} (client {i})"
    x, y = _inputs(client[0], at).numpy(), _labels(client[1], at).numpy()
    if len(client) == 4:
        return x, y, _inputs(client[2], at).numpy(), _labels(client[3], at).numpy()
    return x, y, x[:0], y[:0]


def _as_array(value: object, what: str, where: str) -> np.ndarray:
    try:
        return np.asarray(value)
    except Exception as exc:  # noqa: BLE001  (whatever the user's object is)
        reason = describe(exc)
        raise InputError(f"data error: {where}: {what} are not an array ({reason})") from None


def _inputs(value: object, where: str) -> torch.Tensor:
    array = _as_array(value, "inputs", where)
    if not (np.issubdtype(array.dtype, np.number) and array.ndim >= 2):
        raise InputError(
            f"data error: {where}: inputs must be an array of numbers with a sample axis, "
            f"got {array.dtype} of shape {array.shape}"
        )
    scale = 1 / 255 if array.dtype == np.uint8 else 1  # images of bytes to [0, 1]
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32) * np.float32(scale))


def _labels(value: object, where: str) -> torch.Tensor:
    array = _as_array(value, "labels", where)
    if not np.issubdtype(array.dtype, np.integer):
        raise InputError(f"data error: {where}: labels must be a 1-D array of integers")
    return torch.from_numpy(array.astype(np.int64))
