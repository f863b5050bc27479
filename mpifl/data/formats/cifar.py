"""CIFAR-10 / CIFAR-100 "python version" batches (pickled dicts, loaded as plain data only)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from mpifl import safe_pickle
from mpifl.errors import InputError


def _batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise InputError(f"data error: missing CIFAR batch {path}")
    try:
        with path.open("rb") as fh:
            d = safe_pickle.load(fh, encoding="bytes")
        x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        y = np.asarray(d[label_key], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, MemoryError,
            OverflowError) as exc:  # fmt: skip
        raise InputError(f"data error: {path}: not a CIFAR python batch ({exc!r})") from None
    if len(x) != len(y):
        raise InputError(f"data error: {path}: {len(x)} images but {len(y)} labels")
    return x, y


def load_cifar(
    directory: str | Path, classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train_x, train_y, test_x, test_y) from cifar-10-batches-py or cifar-100-python."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"data error: data.path = {directory}: not a directory")
    if classes == 10:
        parts = [_batch(directory / f"data_batch_{i}", b"labels") for i in range(1, 6)]
        test = _batch(directory / "test_batch", b"labels")
    else:
        parts = [_batch(directory / "train", b"fine_labels")]
        test = _batch(directory / "test", b"fine_labels")
    train_x = np.concatenate([p[0] for p in parts])
    train_y = np.concatenate([p[1] for p in parts])
    return train_x, train_y, test[0], test[1]
