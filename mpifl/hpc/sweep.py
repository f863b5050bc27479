"""Sweeps: a grid over config keys, times seeds, becomes one SLURM job array.

A sweep file (TOML):

    job = "jobs/quickstart.toml"     # the base job
    name = "lr-alpha"                # default: the file's stem
    folder = "sweeps/lr-alpha"       # default: sweeps/<name>
    seeds = [0, 1, 2]                # default: [the job's seed]
    [grid]
    "train.lr" = [0.01, 0.05]
    "data.alpha" = [0.1, 0.5]

Every task's config is resolved and validated up front and written as
<folder>/task_<i>.toml (its run.output is <folder>/task_<i>.h5); array task i runs it.
"""

from __future__ import annotations

import itertools
import json
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from mpifl.errors import InputError, shown
from mpifl.results.status import read_status

KEYS = {"job", "name", "folder", "seeds", "grid"}


@dataclass
class Sweep:
    """An expanded sweep: its folder, each task's config text and its grid values (the
    seed included)."""

    name: str
    folder: Path
    tasks: list[str]
    values: list[dict[str, object]]

    @property
    def submission(self) -> Path:
        """The record `sweep submit` leaves: the job id and when."""
        return self.folder / "submitted.json"

    def task_job(self, i: int | str) -> Path:
        return self.folder / f"task_{i}.toml"

    def task_output(self, i: int | str) -> Path:
        return self.folder / f"task_{i}.h5"


def load_sweep(path: str | Path) -> Sweep:
    """Read, expand and validate a sweep file; InputError names the problem."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"sweep error: {path}: {exc}") from None
    unknown = set(raw) - KEYS
    if unknown or "job" not in raw:
        raise InputError(
            f"sweep error: {path}: needs 'job'; allowed keys {sorted(KEYS)}, got {sorted(raw)}"
        )
    grid = raw.get("grid", {})
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise InputError(f"sweep error: {path}: [grid] must map keys to non-empty lists")
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not name.isprintable() or not name.strip():
        raise InputError(f"sweep error: {path}: name = {shown(name)}: must be printable text")
    folder = raw.get("folder", f"sweeps/{name}")
    if not isinstance(folder, str) or not folder.isprintable() or "$" in folder:
        raise InputError(
            f"sweep error: {path}: folder = {shown(folder)}: must be a printable path without '$'"
        )
    folder = Path(folder)
    if not isinstance(raw["job"], str):
        raise InputError(f"sweep error: {path}: job = {shown(raw['job'])}: must be a job file path")
    from mpifl.jobs import load_job  # (imports torch: only when a sweep is loaded)

    base = load_job(raw["job"])
    seeds = raw.get("seeds", [base.run.seed])
    if not isinstance(seeds, list) or not seeds or not all(_is_seed(s) for s in seeds):
        raise InputError(
            f"sweep error: {path}: seeds = {shown(seeds)}: must be a non-empty list of "
            "integers >= 0"
        )
    tasks, chosen = [], []
    for i, (values, seed) in enumerate(itertools.product(itertools.product(*grid.values()), seeds)):
        sets = [f"{k}={_toml(v)}" for k, v in zip(grid, values, strict=True)]
        sets += [
            f"run.seed={seed}",
            f"run.name={_toml(f'{name}-{i}')}",
            f"run.output={_toml(str(folder / f'task_{i}.h5'))}",
        ]
        chosen.append(dict(zip(grid, values, strict=True)) | {"seed": seed})
        try:
            tasks.append(load_job(raw["job"], sets).to_toml())
        except InputError as exc:
            raise InputError(f"sweep error: task {i} ({', '.join(sets[:-2])}): {exc}") from None
    return Sweep(name, folder, tasks, chosen)


def _is_seed(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _toml(value: object) -> str:
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if not isinstance(value, list) else "[" + ", ".join(map(_toml, value)) + "]"


def write_tasks(sweep: Sweep) -> None:
    """Write every task's resolved job file into the sweep folder."""
    sweep.folder.mkdir(parents=True, exist_ok=True)
    for i, text in enumerate(sweep.tasks):
        sweep.task_job(i).write_text(text)


def record_submission(sweep: Sweep, job_id: str) -> None:
    """Note that the array was submitted (job id, time), for `sweep status`."""
    record = {"job_id": job_id, "submitted": time.strftime("%Y-%m-%d %H:%M:%S")}
    sweep.submission.write_text(json.dumps(record) + "\n")


def submitted(sweep: Sweep) -> dict[str, str] | None:
    """The submission record, or None if the sweep was never submitted from here."""
    try:
        return json.loads(sweep.submission.read_text())
    except (OSError, ValueError):
        return None


def status(sweep: Sweep) -> list[tuple[int, str]]:
    """(task, state): done / running / failed / interrupted, or without an output yet
    queued (the array was submitted) / not submitted."""
    out = []
    waiting = "queued" if submitted(sweep) else "not submitted"
    for i in range(len(sweep.tasks)):
        path = sweep.task_output(i)
        if not path.exists():
            out.append((i, waiting))
            continue
        try:
            state, _ = read_status(path)
        except OSError:
            state = "running"  # being created
        out.append((i, "done" if state == "complete" else state))
    return out
