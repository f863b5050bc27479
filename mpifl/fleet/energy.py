"""Energy on the virtual clock: what a client's round work costs its device (training,
receiving, sending), solar harvesting, and the charge of a fleet's batteries.

A device draws its class's `train_power` while it trains (compute_time), `rx_power`
and `tx_power` while it receives and sends (bytes x 8 / its link's rate), and
`idle_power` the rest of the time, waiting in a round included. A battery-powered device
(battery > 0 J) also harvests `solar` x max(0, sin(2 pi (t / day + phase))) W, its
phase being the diurnal availability model's (its time zone). Its charge moves at every
round's end by what the round's interval cost and brought, clipped to [0, capacity];
below `energy.threshold` of its capacity it declines (status low_battery) until it is
back above `energy.resume`. Work its charge cannot pay for runs it flat: it stops
before it finishes (status dropped). docs/fleet.md gives the sources of the values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mpifl.fleet.profiles import Fleet, transfer_times
from mpifl.results.schema import ENERGY_DTYPE, WORK_ENERGY, Status
from mpifl.streams import Purpose, uniform

if TYPE_CHECKING:  # (the config schema imports the fleet's catalogue)
    from mpifl.config.sections import EnergyConfig

STARTED = (Status.TRAINED, Status.PARTIAL, Status.LATE, Status.DROPPED)  # before surplus


def work_energy(prof: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """(training, receiving, sending) J of each row's work; `prof` are its devices' profiles."""
    down, up = transfer_times(prof, rows["bytes_down"], rows["bytes_up"])
    return (
        prof["train_power"].astype(np.float64) * rows["compute_time"],
        prof["rx_power"].astype(np.float64) * down,
        prof["tx_power"].astype(np.float64) * up,
    )


def busy_time(prof: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Seconds each row's device spends training or transferring (not idle)."""
    down, up = transfer_times(prof, rows["bytes_down"], rows["bytes_up"])
    return rows["compute_time"] + down + up


def sunlit_seconds(phase: np.ndarray, t0: float, t1: float, day: float) -> np.ndarray:
    """The integral of max(0, sin(2 pi (t / day + phase))) over [t0, t1], in seconds."""

    def area(t: float) -> np.ndarray:  # of max(0, sin) from 0 to x, x in radians
        x = 2 * np.pi * (t / day + phase)
        turns = np.floor(x / (2 * np.pi))
        rest = x - 2 * np.pi * turns
        return 2 * turns + np.where(rest < np.pi, 1 - np.cos(rest), 2.0)

    return (area(t1) - area(t0)) * day / (2 * np.pi)


class Batteries:
    """The charge of a fleet's battery-powered devices (battery > 0), held only for them:
    charge (J) and whether each is declining for a low battery, with its capacity, idle
    power and, for those with a panel, solar peak and phase cached."""

    def __init__(self, fleet: Fleet, threshold: float, resume: float, day: float, seed: int):
        prof = fleet.profiles
        self.n_classes = len(fleet.class_names)
        self.ids = np.flatnonzero(prof["battery"] > 0).astype(np.int32)  # (MAX clients 1e9)
        self.capacity = prof["battery"][self.ids].astype(np.float64)
        self.idle = prof["idle_power"][self.ids].astype(np.float64)
        self.device_class = prof["device_class"][self.ids]
        self.charge = prof["start_charge"][self.ids] * self.capacity
        self.threshold, self.resume, self.day = threshold, resume, day
        self.low = self.charge < threshold * self.capacity
        self.sunny = np.flatnonzero(prof["solar"][self.ids] > 0)  # positions in self.ids
        self.solar = prof["solar"][self.ids[self.sunny]].astype(np.float64)
        self.phase = uniform(seed, Purpose.PHASE, -1, self.ids[self.sunny])

    def _positions(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(which of `ids` have a battery, their positions in self.ids)."""
        if not len(self.ids):
            return np.zeros(len(ids), dtype=bool), np.zeros(0, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.ids, ids.astype(np.int32)), len(self.ids) - 1)
        has = self.ids[pos] == ids
        return has, pos[has]

    def charge_of(self, ids: np.ndarray) -> np.ndarray:
        """Charge (J) of each id's battery; NaN for a mains-powered device."""
        out = np.full(len(ids), np.nan)
        has, pos = self._positions(ids)
        out[has] = self.charge[pos]
        return out

    def declining(self, ids: np.ndarray) -> np.ndarray:
        """Whether each id declines to take part for a low battery."""
        out = np.zeros(len(ids), dtype=bool)
        has, pos = self._positions(ids)
        out[has] = self.low[pos]
        return out

    def spare(self, ids: np.ndarray) -> np.ndarray:
        """Each id's charge above the threshold, a fraction of its capacity (mains
        powered: a full battery's, 1 - threshold); -1 while it declines."""
        out = np.full(len(ids), 1.0 - self.threshold)
        has, pos = self._positions(ids)
        fraction = self.charge[pos] / self.capacity[pos]
        out[has] = np.where(self.low[pos], -1.0, fraction - self.threshold)
        return out

    def pay(self, prof: np.ndarray, rows: np.ndarray, span: float) -> None:
        """Take from the batteries of `rows`' devices (profiles `prof`) the energy of the
        work their rows record, less the idle energy it replaces over at most `span` s."""
        has, pos = self._positions(rows["client"])
        work = sum(rows[k] for k in WORK_ENERGY)
        credit = prof["idle_power"] * np.minimum(busy_time(prof, rows), span)
        np.subtract.at(self.charge, pos, (work - credit)[has])
        self.charge[pos] = np.clip(self.charge[pos], 0.0, self.capacity[pos])
        self._update_low(pos)

    def _update_low(self, pos: np.ndarray | slice) -> None:
        """Declining below the threshold, until back above `resume` (hysteresis)."""
        fraction = self.charge[pos] / self.capacity[pos]
        self.low[pos] = np.where(self.low[pos], fraction < self.resume, fraction < self.threshold)

    def advance(self, t0: float, t1: float, prof: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Move every battery over [t0, t1], in which `rows`' devices (profiles `prof`)
        did the work their energies record (idle the rest of the round; work that runs
        past t1 is booked here too); returns the J harvested into each class's batteries
        (none beyond a full one). In place: a fleet's worth of temporaries at most."""
        charge = self.charge
        charge -= self.idle * (t1 - t0)
        self.pay(prof, rows, t1 - t0)
        harvested = np.zeros(self.n_classes)
        if len(self.sunny):
            gained = self.solar * sunlit_seconds(self.phase, t0, t1, self.day)
            level = charge[self.sunny] + gained
            lost = np.maximum(level - self.capacity[self.sunny], 0.0)  # a full battery's
            charge[self.sunny] = level
            harvested = np.bincount(self.device_class[self.sunny], gained - lost, self.n_classes)
        np.clip(charge, 0.0, self.capacity, out=charge)
        self._update_low(slice(None))
        return harvested

    def levels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per device class: the mean state of charge of its batteries (NaN: none), its
        devices declining, and those with an empty battery."""
        k, cls = self.n_classes, self.device_class
        count = np.bincount(cls, minlength=k)
        with np.errstate(invalid="ignore"):
            mean = np.bincount(cls, self.charge / self.capacity, k) / count
        return (
            mean,
            np.bincount(cls[self.low], minlength=k),
            np.bincount(cls[self.charge <= 0], minlength=k),
        )

    def state_dict(self) -> dict[str, np.ndarray]:
        """What a checkpoint keeps."""
        return {"batteries/charge": self.charge.copy(), "batteries/low": self.low.copy()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore what `state_dict` saved."""
        self.charge = np.asarray(state["batteries/charge"], dtype=np.float64)
        self.low = np.asarray(state["batteries/low"], dtype=bool)


class FleetEnergy:
    """A fleet's energy accounts: each round's work priced, its batteries (None with
    energy.batteries off or no battery-powered device) and the `energy` table rows."""

    def __init__(self, fleet: Fleet, batteries: Batteries | None) -> None:
        self.fleet, self.batteries = fleet, batteries
        prof, k = fleet.profiles, len(fleet.class_names)
        self.class_idle = np.bincount(prof["device_class"], prof["idle_power"], k)

    def run_flat(self, rows: np.ndarray) -> np.ndarray:
        """The started rows whose device's charge cannot pay for its work: it runs flat,
        having spent its charge receiving, then training, then sending; such a row is
        dropped, nothing of it arrives, and its energies are what it spent. Returns them."""
        if self.batteries is None:
            return np.zeros(len(rows), dtype=bool)
        train, down, up = work_energy(self.fleet.profiles[rows["client"]], rows)
        charge = self.batteries.charge_of(rows["client"])
        flat = np.isin(rows["status"], STARTED) & (train + down + up > charge)
        left = charge[flat]
        rows["energy_down"][flat] = received = np.minimum(down[flat], left)
        rows["energy_train"][flat] = trained = np.minimum(train[flat], left - received)
        rows["energy_up"][flat] = left - received - trained
        rows["status"][flat], rows["bytes_up"][flat] = Status.DROPPED, 0
        return flat

    def price(self, rows: np.ndarray, flat: np.ndarray) -> None:
        """Fill the energies of the rows not `flat` (run_flat filled those) from their
        work as recorded."""
        keep = ~flat
        train, down, up = work_energy(self.fleet.profiles[rows["client"][keep]], rows[keep])
        rows["energy_train"][keep], rows["energy_down"][keep], rows["energy_up"][keep] = (
            train, down, up,
        )  # fmt: skip

    def end_round(self, round_: int, t0: float, t1: float, rows: np.ndarray) -> np.ndarray:
        """Close a synchronous round that ran from t0 until the next one starts at t1,
        with the work of `rows` (priced): move the batteries; its `energy` table rows."""
        harvested = np.zeros(len(self.class_idle))
        if self.batteries is not None:
            prof = self.fleet.profiles[rows["client"]]
            harvested = self.batteries.advance(t0, t1, prof, rows)
        return self.class_rows(round_, t0, t1, rows, harvested)

    def class_rows(
        self, round_: int, t0: float, t1: float, rows: np.ndarray, harvested: np.ndarray
    ) -> np.ndarray:
        """Round `round_`'s `energy` table rows, one per device class: its clients' work
        (`rows`, priced), every device's idle energy over [t0, t1] less the idle power of
        the busy ones, `harvested`, and the batteries as they are now."""
        prof = self.fleet.profiles[rows["client"]]
        k, cls = len(self.class_idle), rows["device_class"]
        out = np.zeros(k, dtype=ENERGY_DTYPE)
        out["round"], out["device_class"] = round_ + 1, np.arange(k)
        out["energy_train"] = np.bincount(cls, rows["energy_train"], k)
        out["energy_radio"] = np.bincount(cls, rows["energy_down"] + rows["energy_up"], k)
        busy = np.minimum(busy_time(prof, rows), t1 - t0)
        busy_idle = prof["idle_power"].astype(np.float64) * busy
        out["energy_idle"] = self.class_idle * (t1 - t0) - np.bincount(cls, busy_idle, k)
        out["harvested"], out["charge"] = harvested, np.nan
        if self.batteries is not None:
            out["charge"], out["low_battery"], out["flat"] = self.batteries.levels()
        return out


def build_energy(fleet: Fleet, settings: EnergyConfig, day: float, seed: int) -> FleetEnergy:
    """The run's energy accounts (`[energy]`; `day`: emulation.diurnal_period)."""
    batteries = None
    if settings.batteries and np.any(fleet.profiles["battery"] > 0):
        batteries = Batteries(fleet, settings.threshold, settings.resume, day, seed)
    return FleetEnergy(fleet, batteries)
