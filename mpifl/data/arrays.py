"""User-given pooled arrays: an .npz file with `x` (N, ...) and integer labels `y` (N,)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from mpifl.errors import InputError


def load_npz(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Read and check x, y; integer images are scaled to [0, 1]; (N, H, W) gains a channel."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = {"x", "y"} - set(f.files)
            if missing:
                raise InputError(f"data error: {path}: missing arrays {sorted(missing)}")
            x, y = f["x"], f["y"]
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise InputError(f"data error: {path}: not a readable .npz file ({exc})") from None
    if not 2 <= x.ndim <= 4 or y.ndim != 1 or len(x) != len(y) or len(x) == 0:
        raise InputError(
            f"data error: {path}: need x of shape (N, features), (N, H, W) or (N, C, H, W) "
            f"and y of shape (N,) with N >= 1, got {x.shape} and {y.shape}"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise InputError(f"data error: {path}: y must hold integer labels, not {y.dtype}")
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise InputError(f"data error: {path}: x must be numeric, not {x.dtype}")
    if np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float32) / 255.0
    if x.ndim == 3:
        x = x[:, None]
    with np.errstate(over="ignore"):  # beyond float32 is inf: refused by check_labelled
        x32 = np.ascontiguousarray(x, dtype=np.float32)
    return torch.from_numpy(x32), torch.from_numpy(y.astype(np.int64))
