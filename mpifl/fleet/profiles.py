"""Client device profiles as compact per-client arrays, generated from device classes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpifl.fleet.devices import ENERGY_KEYS, PROFILE_KEYS
from mpifl.fleet.intervals import Intervals
from mpifl.results.schema import PROFILE_DTYPE
from mpifl.streams import Purpose, generator

MAX_CLASSES = 256  # device_class is a uint8


@dataclass
class Fleet:
    """N client profiles (one structured array) plus the device class names."""

    profiles: np.ndarray
    class_names: list[str]
    intervals: Intervals | None = None

    def __len__(self) -> int:
        return len(self.profiles)

    def for_clients(self, n: int) -> Fleet:
        """A fleet of n clients where client k has device k mod len(self)."""
        if n == len(self):
            return self
        return self.take(np.arange(n) % len(self))

    def take(self, devices: np.ndarray) -> Fleet:
        """A fleet where client k has device `devices[k]` (with its availability trace)."""
        intervals = None
        if self.intervals is not None:
            iv = self.intervals
            counts = np.diff(iv.offsets)[devices]
            offsets = np.concatenate([[0], np.cumsum(counts)])
            take = np.concatenate(
                [np.arange(iv.offsets[d], iv.offsets[d + 1]) for d in devices]
            ).astype(np.int64)
            intervals = Intervals(offsets, iv.starts[take], iv.ends[take])
        return Fleet(self.profiles[devices], self.class_names, intervals)

    @property
    def nbytes(self) -> int:
        """Memory held by the profile arrays."""
        return self.profiles.nbytes


def transfer_times(
    profiles: np.ndarray, bytes_down: np.ndarray, bytes_up: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(receive, send) seconds of the bytes over each device's links (`profiles`)."""
    down = 8.0 * bytes_down / profiles["downlink"].astype(np.float64)
    up = 8.0 * bytes_up / profiles["uplink"].astype(np.float64)
    return down, up


def generate_fleet(
    n_clients: int, classes: dict[str, dict[str, float]], spread: float, seed: int
) -> Fleet:
    """Draw N profiles: a class per client by mixture weight, lognormal spread inside a
    class (the energy keys too: powers, battery capacity, solar peak), a starting charge
    uniform in the class's [charge_min, charge_max]."""
    rng = generator(seed, Purpose.FLEET)
    names = list(classes)
    weights = np.array([classes[n]["weight"] for n in names], dtype=np.float64)
    cls = rng.choice(len(names), size=n_clients, p=weights / weights.sum()).astype(np.uint8)
    prof = np.zeros(n_clients, dtype=PROFILE_DTYPE)
    prof["device_class"] = cls
    for key in PROFILE_KEYS:
        medians = np.array([classes[n][key] for n in names], dtype=np.float64)[cls]
        if key == "availability":
            prof[key] = medians
        else:
            prof[key] = medians * np.exp(spread * rng.standard_normal(n_clients))
    for key in ENERGY_KEYS:  # drawn after the rest: a fleet's other values are unchanged
        medians = np.array([classes[n][key] for n in names], dtype=np.float64)[cls]
        prof[key] = medians * np.exp(spread * rng.standard_normal(n_clients))
    low, high = (
        np.array([classes[n][k] for n in names])[cls] for k in ("charge_min", "charge_max")
    )
    prof["start_charge"] = low + (high - low) * rng.random(n_clients)
    return Fleet(prof, names)
