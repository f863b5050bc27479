"""Read result files into pandas DataFrames (also while a run is still writing them).

from mpifl.results import read_run, read_runs
run = read_run("results/quickstart.h5")      # one file: .attrs, .config, .tables
rounds = read_runs(paths, "rounds")          # many files: one frame, with a `run`
                                             # column and the config keys as columns
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from mpifl.results.schema import Status
from mpifl.results.status import effective
from mpifl.results.writer import TABLES

NAMES = ("rounds", "participation", "ranks", "eval", "server", "fleet")


@dataclass
class Run:
    """One result file: root attributes, the resolved config, and its tables."""

    path: Path
    attrs: dict[str, Any]
    config: dict[str, Any]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The run's name (`run.name`), or the file's stem."""
        return str(self.attrs.get("name", self.path.stem))

    @property
    def class_names(self) -> list[str]:
        """Device class names, indexed by `device_class`."""
        return list(self.tables["fleet"].attrs.get("device_classes", []))


FORMER_NAMES = {"variant": "family"}  # column -> its name before format 4
ABSENT = {  # columns added in formats 4 and 5 -> their value in older files (not recorded)
    "group": -1,
    "dispatch_time": np.nan,
    "arrival_time": np.nan,
    "staleness": -1,
    "update_weight": np.nan,
}


def _conform(rows: np.ndarray, table: str) -> np.ndarray:
    """Rows of a stored table in the current schema's dtype, column by name (a file of an
    older format: renamed columns found, added ones filled)."""
    if table not in TABLES:
        return rows
    out = np.zeros(len(rows), dtype=TABLES[table])
    for name in out.dtype.names:
        source = name if name in rows.dtype.names else FORMER_NAMES.get(name)
        if source in rows.dtype.names:
            out[name] = rows[source]
        else:
            out[name] = ABSENT.get(name, 0)
    return out


def _frame(rows: np.ndarray, table: str) -> pd.DataFrame:
    rows = _conform(rows, table)
    df = pd.DataFrame(rows)
    if "status" in df:
        df["status"] = pd.Categorical.from_codes(
            df["status"].astype(int), [s.name.lower() for s in Status]
        )
    for column in df.columns:  # text columns (eval.group, server.name) as str
        if rows.dtype[column].kind == "S":
            df[column] = df[column].str.decode("utf-8")
    return df


def read_run(path: str | Path) -> Run:
    """Read one result file (SWMR: works while the run is writing it)."""
    path = Path(path)
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
        config = tomllib.loads(attrs["config"])
        status, error = effective(path, str(attrs.get("status")), attrs.get("error"))
        attrs["status"] = status
        if error is not None:
            attrs["error"] = error
        run = Run(path, attrs, config)
        names = [str(c) for c in f["fleet"].attrs["device_classes"]]
        version = int(attrs.get("format_version", 1))
        for name in NAMES:
            if name not in f:  # the server table is new in format 4
                run.tables[name] = _frame(np.zeros(0, TABLES[name]), name)
                continue
            ds = f[name]
            ds.refresh()
            df = run.tables[name] = _frame(ds[:], name)
            if version < 3 and "round" in df:  # rounds were counted from 0
                df["round"] += 1
            if "device_class" in df:  # an enum, as `status` is
                df["device_class"] = pd.Categorical.from_codes(
                    df["device_class"].astype(int), names
                )
            if "units" in ds.attrs:  # (format_version >= 2)
                for key in ("units", "descriptions"):
                    df.attrs[key] = dict(zip(ds.dtype.names, map(str, ds.attrs[key]), strict=True))
        run.tables["fleet"].attrs["device_classes"] = names
    run.tables["fleet"].insert(0, "client", np.arange(len(run.tables["fleet"])))
    return run


def read_attrs(path: str | Path) -> dict[str, Any]:
    """A result file's root attributes (SWMR: works while the run is writing it); OSError
    if it cannot be read as one."""
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        return dict(f.attrs)


def flat_config(config: dict[str, Any], prefix: str = "", classes: bool = False) -> dict[str, Any]:
    """Dotted keys to scalar values (lists become strings); device classes are skipped
    unless `classes`."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        dotted = prefix + key
        if dotted == "fleet.classes" and not classes:
            continue
        if isinstance(value, dict):
            out.update(flat_config(value, dotted + ".", classes))
        else:
            out[dotted] = str(value) if isinstance(value, list) else value
    return out


def read_runs(
    paths: list[str | Path], table: str, config_keys: list[str] | None = None
) -> pd.DataFrame:
    """One table of many runs, with columns `run` and the config keys (default: every key
    whose value differs between the runs)."""
    runs = [read_run(p) for p in paths]
    configs = [flat_config(r.config) for r in runs]
    if config_keys is None:
        keys = sorted(set().union(*configs))
        config_keys = [k for k in keys if len({repr(c.get(k)) for c in configs}) > 1]
    frames = []
    for run, cfg in zip(runs, configs, strict=True):
        df = run.tables[table].copy()
        df.insert(0, "run", run.name)
        for key in config_keys:
            df[key] = cfg.get(key)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)
