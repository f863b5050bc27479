"""Fleet files: device profiles and availability intervals as CSV or HDF5, and FedScale import.

CSV: `NAME.csv` has one row per client (row i = client i) with the columns
`device_class,flops,memory,uplink,downlink,latency,availability,trace_period` and the
energy columns `train_power,idle_power,tx_power,rx_power,battery,solar,start_charge`
(device_class is a name; a file without the energy columns gets each class's catalogue
values, a phone's for a class outside it, and full batteries); optional
`NAME.intervals.csv` has `client,start,end` rows (seconds, [start, end) when the client
is online). HDF5: dataset `profiles` (the same columns, device_class as an index into
the attribute `device_classes`) and dataset `intervals` (client, start, end).
docs/fleet.md documents both.
"""

from __future__ import annotations

import csv
import pickle
from pathlib import Path

import numpy as np

from mpifl import safe_pickle
from mpifl.errors import InputError, describe
from mpifl.fleet.devices import CATALOGUE, ENERGY_DEFAULTS, ENERGY_KEYS, PROFILE_KEYS
from mpifl.fleet.intervals import Intervals
from mpifl.fleet.profiles import MAX_CLASSES, PROFILE_DTYPE, Fleet
from mpifl.results.fleet_file import read_fleet_h5, write_fleet_h5

REQUIRED = ("device_class", *PROFILE_KEYS, "trace_period")
ENERGY_FILE_COLUMNS = (*ENERGY_KEYS, "start_charge")
COLUMNS = (*REQUIRED, *ENERGY_FILE_COLUMNS)
INTERVAL_DTYPE = np.dtype([("client", "i8"), ("start", "f8"), ("end", "f8")])


def _intervals_path(path: Path) -> Path:
    return path.with_name(path.stem + ".intervals.csv")


def intervals_from_rows(rows: np.ndarray, n_clients: int) -> Intervals:
    """Group (client, start, end) rows into sorted per-client intervals; check them."""
    if len(rows) and (rows["client"].min() < 0 or rows["client"].max() >= n_clients):
        raise InputError(f"fleet error: interval rows name clients outside 0..{n_clients - 1}")
    if np.any(rows["end"] <= rows["start"]):
        raise InputError("fleet error: an availability interval has end <= start")
    rows = np.sort(rows, order=["client", "start"])
    same = rows["client"][1:] == rows["client"][:-1]
    if np.any(same & (rows["start"][1:] < rows["end"][:-1])):
        raise InputError("fleet error: a client's availability intervals overlap")
    offsets = np.zeros(n_clients + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(np.bincount(rows["client"], minlength=n_clients))
    return Intervals(offsets, rows["start"].copy(), rows["end"].copy())


def interval_rows(intervals: Intervals) -> np.ndarray:
    """Intervals back to (client, start, end) rows."""
    rows = np.zeros(len(intervals.starts), dtype=INTERVAL_DTYPE)
    rows["client"] = np.repeat(np.arange(len(intervals.offsets) - 1), np.diff(intervals.offsets))
    rows["start"], rows["end"] = intervals.starts, intervals.ends
    return rows


def save_fleet(fleet: Fleet, path: Path) -> None:
    """Write a fleet file (.csv, with .intervals.csv beside it, or .h5)."""
    if path.suffix == ".h5":
        rows = None if fleet.intervals is None else interval_rows(fleet.intervals)
        write_fleet_h5(path, fleet.profiles, fleet.class_names, rows)
        return
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(COLUMNS)
        for p in fleet.profiles:
            out.writerow(
                [fleet.class_names[p["device_class"]], *(repr(float(p[k])) for k in COLUMNS[1:])]
            )
    if fleet.intervals is not None:
        with _intervals_path(path).open("w", newline="") as fh:
            out = csv.writer(fh)
            out.writerow(INTERVAL_DTYPE.names)
            for r in interval_rows(fleet.intervals):
                out.writerow([int(r["client"]), repr(float(r["start"])), repr(float(r["end"]))])


def load_fleet(path: str | Path) -> Fleet:
    """Read a fleet file; any problem is an InputError naming the file."""
    path = Path(path)
    if path.exists() and not path.is_file():  # a folder, a FIFO or a device
        raise InputError(f"fleet error: {path} is not a regular file")
    if not path.is_file():
        raise InputError(f"fleet error: fleet file not found: {path}")
    try:
        fleet = _load_h5(path) if path.suffix == ".h5" else _load_csv(path)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001  (untrusted input: any failure is the file's)
        raise InputError(f"fleet error: {path}: not a fleet file ({describe(exc)})") from None
    check_profiles(fleet, str(path))
    return fleet


def _load_h5(path: Path) -> Fleet:
    raw, names, rows = read_fleet_h5(path)
    if len(names) > MAX_CLASSES or np.any(raw["device_class"] >= len(names)):
        raise ValueError(f"device_class must index the {len(names)} (<= 256) device_classes")
    profiles = np.zeros(len(raw), dtype=PROFILE_DTYPE)
    for col in REQUIRED:
        profiles[col] = raw[col]
    given = {c: raw[c] for c in ENERGY_FILE_COLUMNS if c in raw.dtype.names}
    _energy_columns(profiles, names, given)
    intervals = None
    if rows is not None:
        intervals = intervals_from_rows(rows.astype(INTERVAL_DTYPE), len(raw))
    return Fleet(profiles, names, intervals)


def _load_csv(path: Path) -> Fleet:
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = set(REQUIRED) - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"missing columns {sorted(missing)}; need {', '.join(REQUIRED)}")
        rows = list(reader)
        given = [c for c in ENERGY_FILE_COLUMNS if c in (reader.fieldnames or [])]
    names = list(dict.fromkeys(r["device_class"] for r in rows))
    if len(names) > MAX_CLASSES:
        raise ValueError(f"{len(names)} device classes; at most {MAX_CLASSES} are supported")
    profiles = np.zeros(len(rows), dtype=PROFILE_DTYPE)
    profiles["device_class"] = [names.index(r["device_class"]) for r in rows]
    for col in REQUIRED[1:]:
        profiles[col] = [float(r[col]) for r in rows]
    _energy_columns(profiles, names, {c: [float(r[c]) for r in rows] for c in given})
    intervals = None
    ipath = _intervals_path(path)
    if ipath.is_file():
        data = np.loadtxt(ipath, delimiter=",", skiprows=1, ndmin=2)
        rows_iv = np.zeros(len(data), dtype=INTERVAL_DTYPE)
        if len(data):
            rows_iv["client"], rows_iv["start"], rows_iv["end"] = data[:, 0], data[:, 1], data[:, 2]
        intervals = intervals_from_rows(rows_iv, len(profiles))
    return Fleet(profiles, names, intervals)


def _energy_columns(profiles: np.ndarray, names: list[str], given: dict[str, object]) -> None:
    """Fill the energy columns: from `given` (a file's), else each device's class values
    in the catalogue (a phone's for a class not in it), with a full battery."""
    for col in ENERGY_FILE_COLUMNS:
        if col in given:
            profiles[col] = given[col]
        elif col == "start_charge":
            profiles[col] = 1.0
        else:
            values = [CATALOGUE.get(n, {}).get(col, ENERGY_DEFAULTS[col]) for n in names]
            profiles[col] = np.array(values, dtype=np.float64)[profiles["device_class"]]


def check_profiles(fleet: Fleet, where: str) -> None:
    """InputError unless every profile value is finite and in range (`where` names the
    source: a fleet file, or the generator's config keys)."""
    p = fleet.profiles
    if len(p) == 0:
        raise InputError(f"fleet error: {where}: no clients")
    for col in COLUMNS[1:]:
        if not np.all(np.isfinite(p[col])):
            raise InputError(f"fleet error: {where}: column {col} must be finite for every client")
    for col in ("flops", "memory", "uplink", "downlink"):
        if not np.all(p[col] > 0):
            raise InputError(f"fleet error: {where}: column {col} must be > 0 for every client")
    if not np.all((p["availability"] >= 0) & (p["availability"] <= 1)):
        raise InputError(f"fleet error: {where}: availability must be in [0, 1]")
    if np.any(p["latency"] < 0) or np.any(p["trace_period"] < 0):
        raise InputError(f"fleet error: {where}: latency and trace_period must be >= 0")
    for col in ENERGY_KEYS:
        if np.any(p[col] < 0):
            raise InputError(f"fleet error: {where}: column {col} must be >= 0 for every client")
    if not np.all((p["start_charge"] >= 0) & (p["start_charge"] <= 1)):
        raise InputError(f"fleet error: {where}: start_charge must be in [0, 1]")
    iv = fleet.intervals
    if iv is not None and not (np.all(np.isfinite(iv.starts)) and np.all(np.isfinite(iv.ends))):
        raise InputError(f"fleet error: {where}: availability intervals must be finite")


def import_fedscale(
    capacity_path: Path,
    behaviour_path: Path | None,
    reference_flops: float,
    latency: float,
) -> Fleet:
    """Build a fleet from FedScale's pickled traces.

    capacity: {client_id: {"computation": ms per sample, "communication": kbit/s}};
    speed = reference_flops (training FLOPs per sample of the model FedScale timed) /
    (computation / 1000). Memory is not in FedScale's traces: each device takes the memory
    budget of the catalogue class nearest in log FLOP/s (the class is recorded).
    behaviour: {client_id: {"active": [t...], "inactive": [t...], "finish_time": t}}: the
    client is online in [active[i], inactive[i]), its trace repeating every finish_time.
    FedScale's traces hold no energy figures: every device gets a phone's (ENERGY_DEFAULTS)
    and a full battery.
    Client ids are sorted; client i of the fleet is the i-th id.
    """
    capacity = _unpickle(capacity_path)
    try:
        fleet = _fedscale_fleet(capacity, behaviour_path, reference_flops, latency)
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        raise InputError(f"fleet error: FedScale traces: unexpected content ({exc!r})") from None
    check_profiles(fleet, str(capacity_path))
    return fleet


def _fedscale_fleet(
    capacity: dict, behaviour_path: Path | None, reference_flops: float, latency: float
) -> Fleet:
    ids = sorted(capacity)
    speeds = np.array([reference_flops / (float(capacity[c]["computation"]) / 1000.0) for c in ids])
    names = list(CATALOGUE)
    class_flops = np.log([CATALOGUE[n]["flops"] for n in names])
    cls = np.abs(np.log(speeds)[:, None] - class_flops[None, :]).argmin(axis=1)
    profiles = np.zeros(len(ids), dtype=PROFILE_DTYPE)
    profiles["device_class"] = cls
    profiles["flops"] = speeds
    profiles["memory"] = [CATALOGUE[names[c]]["memory"] for c in cls]
    bandwidth = np.array([float(capacity[c]["communication"]) * 1000.0 for c in ids])
    profiles["uplink"] = profiles["downlink"] = bandwidth
    profiles["latency"] = latency
    profiles["availability"] = 1.0
    for col in ENERGY_KEYS:
        profiles[col] = ENERGY_DEFAULTS[col]
    profiles["start_charge"] = 1.0
    intervals = None
    if behaviour_path is not None:
        behaviour = _unpickle(behaviour_path)
        rows = []
        for i, c in enumerate(ids):
            trace = behaviour.get(c, behaviour.get(str(c)))
            if trace is None:
                raise InputError(f"fleet error: {behaviour_path}: no trace for client {c}")
            period = float(trace["finish_time"])
            pairs = list(zip(trace["active"], trace["inactive"], strict=False))
            rows += [(i, float(a), float(b)) for a, b in pairs if b > a]
            profiles["trace_period"][i] = period
            online = sum(min(b, period) - a for a, b in pairs if b > a and a < period)
            profiles["availability"][i] = min(1.0, online / period) if period > 0 else 1.0
        intervals = intervals_from_rows(np.array(rows, dtype=INTERVAL_DTYPE), len(ids))
    return Fleet(profiles, names, intervals)


def _unpickle(path: Path) -> dict:
    try:
        with Path(path).open("rb") as fh:
            data = safe_pickle.load(fh)
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError,
            MemoryError, OverflowError) as exc:  # fmt: skip
        raise InputError(f"fleet error: {path}: not a readable pickle ({exc})") from None
    if not isinstance(data, dict) or not data:
        raise InputError(f"fleet error: {path}: expected a non-empty dict keyed by client id")
    return data
