"""The built-in `digits` data set: scikit-learn's bundled 1797 8x8 handwritten digits."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from mpifl.errors import InputError


def digits_path() -> Path:
    """Path of the csv.gz that ships inside scikit-learn (read without importing sklearn)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("data error: data.name = 'digits' needs scikit-learn installed")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"


def load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 1, 8, 8) scaled to [0, 1] and labels (N,)."""
    raw = np.loadtxt(digits_path(), delimiter=",", dtype=np.float32)
    x = torch.from_numpy(raw[:, :64].reshape(-1, 1, 8, 8) / 16.0)
    y = torch.from_numpy(raw[:, 64].astype(np.int64))
    return x, y
