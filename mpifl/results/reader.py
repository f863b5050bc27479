"""Read result files into pandas DataFrames (also while a run is still writing them).

from mpifl.results import read_run, read_runs
run = read_run("results/quickstart.h5")      # one file: .attrs, .config, .tables
rounds = read_runs(paths, "rounds")          # many files: one frame, with a `run`
                                             # column and the config keys as columns

A method's declared per-client figures (`client_metrics`, stored in long format) are also
columns of `participation`, NaN where a client has no value.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mpifl.results.flat import flat_config
from mpifl.results.opening import open_result
from mpifl.results.schema import Status
from mpifl.results.status import effective
from mpifl.results.writer import TABLES, ClientMetrics, declared_metrics

# `ranks` is the last table a round appends to (`Recorder.record`), so it is read first:
# every table read after it holds all the rounds it lists.
NAMES = ("ranks", "rounds", "participation", "eval", "server", "client_metrics", "energy", "fleet")


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

    @cached_property
    def settings(self) -> dict[str, Any]:
        """The config as dotted keys (`flat_config`, device classes aside), read once."""
        return flat_config(self.config)

    @property
    def class_names(self) -> list[str]:
        """Device class names, indexed by `device_class`."""
        return list(self.tables["fleet"].attrs.get("device_classes", []))


FORMER_NAMES = {"variant": "family"}  # column -> its name before format 4
ABSENT = {  # columns added in formats 4, 5, 7 and 8 -> their value in older files (not recorded)
    "steps": -1,
    "energy_train": np.nan,
    "energy_down": np.nan,
    "energy_up": np.nan,
    "charge": np.nan,
    "energy": np.nan,
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
    with open_result(path) as f:
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
            if name not in f:  # server: new in format 4, client_metrics 6, energy 8
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
        declared = declared_metrics(f["client_metrics"]) if "client_metrics" in f else {}
    _drop_unfinished_round(run.tables)
    run.tables["fleet"].insert(0, "client", np.arange(len(run.tables["fleet"])))
    _widen(run.tables["participation"], run.tables["client_metrics"], declared)
    return run


def _drop_unfinished_round(tables: dict[str, pd.DataFrame]) -> None:
    """Keep the rounds the file holds in full: those its `ranks` table, read first, lists.
    Rows of a round under way are dropped: in a file being written, or left by a run that
    was killed or failed in the middle of a round."""
    ranks = tables["ranks"]["round"]
    done = int(ranks.max()) if len(ranks) else 0
    for name, df in tables.items():
        if "round" in df and len(df) and df["round"].max() > done:
            tables[name] = df[df["round"] <= done].reset_index(drop=True)


def _widen(part: pd.DataFrame, long: pd.DataFrame, declared: ClientMetrics) -> None:
    """Add to `part` a float column per declared client metric, from the long
    `client_metrics` rows, which belong to the `trained` rows (a client trains at most
    once in a round, though an asynchronous round may list it more than once); NaN where
    a client has no value. Each column gets its unit and description; `long.attrs` gets
    them too, as `metric_units` and `metric_descriptions`."""
    long.attrs["metric_units"] = {n: u for n, (u, _) in declared.items()}
    long.attrs["metric_descriptions"] = {n: d for n, (_, d) in declared.items()}
    if not declared:
        return
    trained = part["status"].isin(["trained", "partial"]).to_numpy()
    keys = pd.MultiIndex.from_arrays(
        [part["round"].to_numpy()[trained], part["client"].to_numpy()[trained]]
    )
    wide = long.pivot_table(index=["round", "client"], columns="name", values="value",
                            aggfunc="first", dropna=False)  # fmt: skip
    for name, (unit, description) in declared.items():
        column = np.full(len(part), np.nan)
        if name in wide.columns:
            column[trained] = wide[name].reindex(keys).to_numpy(dtype=np.float64)
        part[name] = column
        for key, text in (("units", unit), ("descriptions", description)):
            part.attrs.setdefault(key, {})[name] = text


def read_runs(
    paths: list[str | Path], table: str, config_keys: list[str] | None = None
) -> pd.DataFrame:
    """One table of many runs, with columns `file` (the path as given), `run` (its name)
    and the config keys (default: every key whose value differs between the runs)."""
    runs = [read_run(p) for p in paths]
    configs = [r.settings for r in runs]
    if config_keys is None:
        keys = sorted(set().union(*configs))
        config_keys = [k for k in keys if len({repr(c.get(k)) for c in configs}) > 1]
    frames = []
    for path, run, cfg in zip(paths, runs, configs, strict=True):
        df = run.tables[table].copy()
        df.insert(0, "run", run.name)
        df.insert(0, "file", str(path))
        for key in config_keys:
            df[key] = cfg.get(key)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)
