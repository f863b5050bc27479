"""Client device profiles as compact per-client arrays, generated from device classes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpifl.fleet.devices import PROFILE_KEYS
from mpifl.streams import Purpose, generator

PROFILE_DTYPE = np.dtype(
    [
        ("device_class", "u1"),
        ("flops", "f4"),  # training speed, FLOP/s
        ("memory", "f8"),  # training memory budget, bytes
        ("uplink", "f4"),  # bit/s
        ("downlink", "f4"),  # bit/s
        ("latency", "f4"),  # s, one way
        ("availability", "f4"),  # probability of being online in a round
    ]
)


@dataclass
class Fleet:
    """N client profiles (one structured array) plus the device class names."""

    profiles: np.ndarray
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.profiles)

    @property
    def nbytes(self) -> int:
        """Memory held by the profile arrays."""
        return self.profiles.nbytes


def generate_fleet(
    n_clients: int, classes: dict[str, dict[str, float]], spread: float, seed: int
) -> Fleet:
    """Draw N profiles: a class per client by mixture weight, lognormal spread inside a class."""
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
    return Fleet(prof, names)
