"""TFF-style federated HDF5: `examples/<client_id>/<feature>` (as pfl-research and FLUTE use)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from mpifl.errors import InputError


def load_tff(path: str | Path, x_key: str, y_key: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(x, y) per client id, sorted by id."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"data error: data.path = {path}: file not found")
    try:
        with h5py.File(path, "r") as f:
            if "examples" not in f:
                raise InputError(f"data error: {path}: no 'examples' group")
            out = {}
            for client in sorted(f["examples"]):
                group = f["examples"][client]
                for key in (x_key, y_key):
                    if key not in group:
                        raise InputError(
                            f"data error: {path}: examples/{client} has no '{key}' "
                            f"(has {', '.join(group)}); set data.tff_x / data.tff_y"
                        )
                out[client] = (np.asarray(group[x_key]), np.asarray(group[y_key]).reshape(-1))
    except OSError as exc:
        raise InputError(f"data error: {path}: not a readable HDF5 file ({exc})") from None
    if not out:
        raise InputError(f"data error: {path}: 'examples' holds no clients")
    return out
