"""Dealing a fleet's devices to clients by their data (`fleet.deal = "by_data"`).

Drawn independently, a device class's share of the training data is left to chance: on
FedProx's Synthetic data (lognormal client sizes) one client may hold a quarter of all
samples, and whether it is a microcontroller that cannot train decides a seed's result.
Dealt by data, the same devices go to the clients so that each class holds about its
share of the data (its fraction of the devices): clients from the largest to the
smallest take a device of a class drawn with probability proportional to how far the
class's data falls short of its share, among the classes with devices left."""

from __future__ import annotations

import numpy as np

from mpifl.fleet.profiles import Fleet
from mpifl.streams import Purpose, generator


def deal_by_data(fleet: Fleet, n_train: np.ndarray, seed: int) -> Fleet:
    """`fleet`'s devices dealt to clients (one each) so that every device class holds
    about its share of `n_train` (training samples per client)."""
    rng = generator(seed, Purpose.FLEET, 0)  # (generate_fleet draws from round -1)
    cls = fleet.profiles["device_class"]
    classes, counts = np.unique(cls, return_counts=True)
    target = (counts / len(cls) * float(np.sum(n_train))).tolist()
    pools = [rng.permutation(np.flatnonzero(cls == c)).tolist() for c in classes]
    left, held = counts.tolist(), [0.0] * len(classes)
    order = np.argsort(-np.asarray(n_train), kind="stable")
    draws, sizes = rng.random(len(order)).tolist(), np.asarray(n_train)[order].tolist()
    devices = np.empty(len(cls), dtype=np.int64)
    for client, u, size in zip(order.tolist(), draws, sizes, strict=True):
        weight = [max(t - h, 0.0) if n else 0.0 for t, h, n in zip(target, held, left, strict=True)]
        if not sum(weight) > 0:
            weight = [float(n) for n in left]
        k, bound, edge = 0, u * sum(weight), weight[0]
        while bound >= edge and k + 1 < len(weight):  # the class whose interval holds u
            k += 1
            edge += weight[k]
        while not left[k]:  # (rounding at the top end)
            k -= 1
        devices[client] = pools[k].pop()
        held[k] += size
        left[k] -= 1
    return fleet.take(devices)
