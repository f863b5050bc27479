"""The built-in `digits` data set: scikit-learn's bundled 1797 8x8 handwritten digits."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from mpifl.errors import InputError


def packaged_file(package: str, relative: str, source: str) -> Path:
    """A data file that ships inside an installed package, found without importing it;
    InputError naming the data source `source` if the package is missing."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"data error: data.name = '{source}' needs the {package} package")
    return Path(spec.submodule_search_locations[0]) / relative


def digits_path() -> Path:
    """Path of the csv.gz that ships inside scikit-learn."""
    return packaged_file("sklearn", "datasets/data/digits.csv.gz", "digits")


def load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 1, 8, 8) scaled to [0, 1] and labels (N,)."""
    raw = np.loadtxt(digits_path(), delimiter=",", dtype=np.float32)
    x = torch.from_numpy(raw[:, :64].reshape(-1, 1, 8, 8) / 16.0)
    y = torch.from_numpy(raw[:, 64].astype(np.int64))
    return x, y
