"""A data plugin: wearable motion sensors, one client per device (a natural partition).

Each device records windows of a 3-axis accelerometer (3 x 32 samples) while its owner
is still, walks, runs or climbs stairs. Devices differ as real fleets do: each sensor has
its own gain and offset per axis and its own noise level, each owner a cadence, and
each owner spends their time in a few activities of their own (label skew). The data are
generated from `seed`, so every rank builds the same fleet.

    [data]
    name = "python"
    factory = "examples.sensors:load"
"""

from __future__ import annotations

import numpy as np

DEVICES = 120
AXES, STEPS = 3, 32
ACTIVITIES = 4  # still, walking, running, stairs
RATE = 16.0  # samples per second


def _window(activity: int, cadence: float, rng: np.random.Generator) -> np.ndarray:
    """One (AXES, STEPS) window of an activity's motion before the sensor's own distortion."""
    t = np.arange(STEPS) / RATE + rng.uniform(0, 1)
    amplitude, frequency = [(0.05, 0.0), (0.6, 1.0), (1.5, 1.5), (0.9, 0.7)][activity]
    phase = rng.uniform(0, 2 * np.pi, AXES)
    motion = amplitude * np.sin(2 * np.pi * frequency * cadence * t[None, :] + phase[:, None])
    if activity == 3:  # stairs: a vertical drift on the third axis
        motion[2] += 0.5 * t
    motion[2] += 1.0  # gravity
    return motion


def _device(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One device's windows and labels."""
    n = int(rng.integers(20, 80))
    preferred = rng.dirichlet(np.full(ACTIVITIES, 0.5))
    labels = rng.choice(ACTIVITIES, size=n, p=preferred)
    gain = rng.lognormal(0.0, 0.2, AXES)[:, None]
    offset = rng.normal(0.0, 0.2, AXES)[:, None]
    noise, cadence = rng.uniform(0.1, 0.4), rng.uniform(0.8, 1.25)
    x = np.stack([_window(int(a), cadence, rng) for a in labels])
    x = gain * x + offset + noise * rng.standard_normal(x.shape)
    return x.astype(np.float32), labels.astype(np.int64)


def load(seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The fleet's data: one (x, y) per device; x is (windows, 3, 32)."""
    rng = np.random.default_rng([seed, 2024])
    return [_device(rng) for _ in range(DEVICES)]
