"""Client availability on the virtual clock: always, Bernoulli per round, diurnal, traces.

A model answers two questions for a round starting at virtual time t0: which sampled
clients are online at t0, and which of them stay online until they would finish.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import numpy as np

from mpifl.errors import ConfigError
from mpifl.fleet.intervals import Intervals
from mpifl.fleet.profiles import Fleet
from mpifl.streams import Purpose, uniform

if TYPE_CHECKING:  # (the config schema imports the fleet's catalogue)
    from mpifl.config.sections import EmulationConfig


class Availability(ABC):
    """Availability of clients on the virtual clock."""

    @abstractmethod
    def online(self, ids: np.ndarray, round_: int, t0: float) -> np.ndarray:
        """Bool per id: online when the round starts at virtual time t0."""

    def stays_online(self, ids: np.ndarray, t0: float, finish: np.ndarray) -> np.ndarray:
        """Bool per id: still online at t0 + finish (given online at t0)."""
        return np.ones(len(ids), dtype=bool)


class Always(Availability):
    """Every client is always online."""

    def online(self, ids: np.ndarray, round_: int, t0: float) -> np.ndarray:
        return np.ones(len(ids), dtype=bool)


class Bernoulli(Availability):
    """Online in a round with the client's probability, independently per round."""

    def __init__(self, probability: np.ndarray, seed: int) -> None:
        self.p, self.seed = probability, seed

    def online(self, ids: np.ndarray, round_: int, t0: float) -> np.ndarray:
        return uniform(self.seed, Purpose.AVAILABILITY, round_, ids) < self.p[ids]


class Diurnal(Availability):
    """A daily cycle: p_k(t) = clip(p_k (1 + a sin(2 pi (t / period + phase_k))), 0, 1).

    Time is cut into slots; a client is online in a slot with probability p_k at the
    slot's time, drawn independently per slot. It must be online in the slot where its
    work starts and in the slot where it ends. phase_k is uniform per client (its time zone).
    """

    def __init__(
        self, probability: np.ndarray, amplitude: float, period: float, slot: float, seed: int
    ) -> None:
        self.p, self.amplitude, self.period, self.slot, self.seed = (
            probability,
            amplitude,
            period,
            slot,
            seed,
        )

    def probability(self, ids: np.ndarray, t: np.ndarray | float) -> np.ndarray:
        """p_k(t) for each id."""
        phase = uniform(self.seed, Purpose.PHASE, -1, ids)
        wave = np.sin(2 * np.pi * (np.asarray(t) / self.period + phase))
        return np.clip(self.p[ids] * (1 + self.amplitude * wave), 0.0, 1.0)

    def _online_at(self, ids: np.ndarray, t: np.ndarray) -> np.ndarray:
        slot = np.floor(t / self.slot).astype(np.int64)
        draws = uniform(self.seed, Purpose.AVAILABILITY, slot, ids)
        return draws < self.probability(ids, slot * self.slot)

    def online(self, ids: np.ndarray, round_: int, t0: float) -> np.ndarray:
        return self._online_at(ids, np.full(len(ids), t0))

    def stays_online(self, ids: np.ndarray, t0: float, finish: np.ndarray) -> np.ndarray:
        return self._online_at(ids, t0 + finish)


class TraceIntervals(Availability):
    """Online during listed [start, end) intervals; a client's trace repeats with its own
    period (FedScale style: time modulo the trace's finish time; 0 = no repeat). A client
    must stay inside one interval until it finishes."""

    def __init__(self, intervals: Intervals, period: np.ndarray) -> None:
        self.intervals, self.period = intervals, period

    def _interval_end(self, ids: np.ndarray, t: float) -> np.ndarray:
        """End of the interval containing t (mod period) per id, or NaN if offline."""
        out = np.full(len(ids), np.nan)
        iv = self.intervals
        for j, client in enumerate(ids):
            period = self.period[client]
            local = t % period if period > 0 else t
            lo, hi = iv.offsets[client], iv.offsets[client + 1]
            starts, ends = iv.starts[lo:hi], iv.ends[lo:hi]
            k = np.searchsorted(starts, local, side="right") - 1
            if k >= 0 and local < ends[k]:
                out[j] = t + (ends[k] - local)
        return out

    def online(self, ids: np.ndarray, round_: int, t0: float) -> np.ndarray:
        return ~np.isnan(self._interval_end(ids, t0))

    def stays_online(self, ids: np.ndarray, t0: float, finish: np.ndarray) -> np.ndarray:
        end = self._interval_end(ids, t0)
        return ~np.isnan(end) & (t0 + finish <= end)


def build_availability(emulation: EmulationConfig, fleet: Fleet, seed: int) -> Availability:
    """The availability model that `[emulation]` names, for `fleet`."""
    kind = emulation.availability
    p = fleet.profiles["availability"].astype(np.float64)
    if kind == "always":
        return Always()
    if kind == "bernoulli":
        return Bernoulli(p, seed)
    if kind == "diurnal":
        return Diurnal(
            p, emulation.diurnal_amplitude, emulation.diurnal_period, emulation.slot, seed
        )
    if fleet.intervals is None:
        raise ConfigError(
            "emulation.availability", kind, "needs fleet.trace: a fleet file with intervals"
        )
    return TraceIntervals(fleet.intervals, fleet.profiles["trace_period"].astype(np.float64))
