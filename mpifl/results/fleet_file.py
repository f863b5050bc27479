"""The HDF5 form of a fleet file (`mpifl fleet ... --output NAME.h5`; docs/fleet.md):
dataset `profiles` with the attribute `device_classes`, and optionally `intervals`.
Checking what is read is the fleet package's job (mpifl.fleet.traces)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np


def write_fleet_h5(
    path: Path, profiles: np.ndarray, class_names: list[str], intervals: np.ndarray | None
) -> None:
    """Write profiles (device_class indexing `class_names`) and interval rows."""
    with h5py.File(path, "w") as f:
        f.create_dataset("profiles", data=profiles)
        f["profiles"].attrs["device_classes"] = class_names
        if intervals is not None:
            f.create_dataset("intervals", data=intervals)


def read_fleet_h5(path: Path) -> tuple[np.ndarray, list[str], np.ndarray | None]:
    """(profile rows, device class names, interval rows or None) as stored."""
    with h5py.File(path, "r") as f:
        names = [str(n) for n in f["profiles"].attrs["device_classes"]]
        intervals = f["intervals"][:] if "intervals" in f else None
        return f["profiles"][:], names, intervals
