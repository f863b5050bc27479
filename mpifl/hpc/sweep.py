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
from mpifl.files import write_text
from mpifl.hpc.queue import LIVE, slurm_states
from mpifl.results.lock import lock_held
from mpifl.results.opening import read_attrs
from mpifl.results.status import effective

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

    def describe(self, i: int) -> str:
        """Task i's grid values and seed, as "key=value ..."."""
        return " ".join(f"{k}={v}" for k, v in self.values[i].items())


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
    from mpifl.jobs import load_job

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
    """Write every task's resolved job file into the sweep folder; InputError if it
    cannot be."""
    try:
        sweep.folder.mkdir(parents=True, exist_ok=True)
        for i, text in enumerate(sweep.tasks):
            write_text(sweep.task_job(i), text, f"task {i}'s job file")
    except OSError as exc:
        raise InputError(f"sweep error: cannot write the task files into {sweep.folder}: "
                         f"{exc}") from None  # fmt: skip


def record_submission(sweep: Sweep, job_id: str, tasks: list[int]) -> None:
    """Add a submission of `tasks` as array job `job_id` (and when) to the sweep's record,
    for `sweep status`."""
    record = {"job_id": job_id, "submitted": time.strftime("%Y-%m-%d %H:%M:%S %z"),
              "tasks": tasks}  # fmt: skip
    write_text(sweep.submission, json.dumps([*submissions(sweep), record]) + "\n",
               "the submission record")  # fmt: skip


def submissions(sweep: Sweep) -> list[dict]:
    """Every submission recorded from here, oldest first ([] if none); a record of an
    older mpifl (one submission of every task) reads as such. InputError if the record
    is not one mpifl wrote (it is never overwritten then)."""
    try:
        text = sweep.submission.read_text()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise InputError(f"sweep error: {sweep.submission}: {exc}") from None
    try:
        record = json.loads(text)
    except ValueError:
        record = None
    if isinstance(record, dict):
        record = [record | {"tasks": list(range(len(sweep.tasks)))}]
    if not _well_formed(record, len(sweep.tasks)):
        raise InputError(
            f"sweep error: {sweep.submission} is not a submission record mpifl wrote (it lists "
            "the array jobs submitted from this folder); move it away to start a new one"
        )
    return record


def _well_formed(record: object, n_tasks: int) -> bool:
    """A list of {"job_id": id, "tasks": [task numbers of this sweep], ...}."""
    return isinstance(record, list) and all(
        isinstance(r, dict)
        and isinstance(r.get("job_id"), str | int)
        and isinstance(r.get("tasks"), list)
        and all(isinstance(t, int) and 0 <= t < n_tasks for t in r["tasks"])
        for r in record
    )


# a result file's state, or SLURM's word for a task that has no file yet
DONE = "done"
ENDED_SLURM = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
               "PREEMPTED", "BOOT_FAIL", "DEADLINE"}  # fmt: skip
# states a submission or `sweep run` leaves alone: the file needs a person
BLOCKED = ("unreadable", "stale")


def status(sweep: Sweep) -> list[tuple[int, str]]:
    """(task, state) from the task's result file and, where SLURM is here, what squeue
    and sacct say of its last submission: done / running / failed / interrupted / killed
    (the file says running but SLURM has no such task live, or no process holds its
    lock), queued, died before writing (SLURM ran it, no file: the task's log says why),
    failed here (`sweep run` ran it, no file: its local log says why), not submitted;
    unreadable (the file cannot be read) and stale (the file ran another config than the
    task's now, its output path aside: the sweep file changed) need a person."""
    last: dict[int, str] = {}
    for record in submissions(sweep):
        for task in record["tasks"]:
            last[task] = str(record["job_id"])
    slurm = slurm_states(sorted(set(last.values()))) if last else None
    out = []
    for i in range(len(sweep.tasks)):
        queue = None if slurm is None or i not in last else slurm.get((last[i], i), "ENDED")
        state = _state(sweep.task_output(i), i in last, queue, sweep.tasks[i])
        if state == "not submitted" and local_log(sweep, i).exists():
            state = f"failed here (see {local_log(sweep, i)})"
        out.append((i, state))
    return out


def local_log(sweep: Sweep, i: int) -> Path:
    """Where `mpifl sweep run` logs task i."""
    return sweep.folder / f"task_{i}.local.log"


def stale_change(stored: str, now: str, ignored: tuple[str, ...] = ()) -> str | None:
    """How a run's stored config (TOML) differs from the config `now` (TOML): "KEY was
    OLD, now NEW" for the first setting that differs (keys the run predates count at
    today's defaults; `ignored` and the resumable keys left out), why the stored one no
    longer loads, or None."""
    from mpifl.engine.startup import config_change
    from mpifl.jobs import validate_job

    try:
        stored = validate_job(tomllib.loads(stored)).to_toml()
    except (InputError, ValueError) as exc:
        return f"its job no longer loads: {exc}"
    return config_change(stored, now, ignored)


def _state(path: Path, sent: bool, queue: str | None, task: str | None = None) -> str:
    """One task's state (see `status`); `queue`: SLURM's state of its last submission,
    "ENDED" if SLURM no longer lists it, None if SLURM cannot be asked; `task`: the task's
    config (TOML), against which a readable file is stale."""
    live = LIVE.get(queue or "")
    if not path.exists():
        if queue is None or live:
            return live or ("queued" if sent else "not submitted")
        ended = f" (SLURM: {queue})" if queue != "ENDED" else ""
        return f"died before writing{ended}"
    try:
        attrs = read_attrs(path)  # read once: the status and the config
    except OSError as exc:
        if live == "running" or lock_held(path):
            return "running"  # being created
        return f"unreadable ({exc})"
    state, _ = effective(path, str(attrs.get("status", "running")), None)
    change = None if task is None or "config" not in attrs else (
        stale_change(str(attrs["config"]), task, ignored=("run.output",))  # (a moved folder)
    )  # fmt: skip
    if change is not None:
        return f"stale: {change}"
    if state == "complete":
        return DONE
    if live == "running" and state in ("running", "killed"):  # (a lock on another node
        return "running"  # may not show from here: SLURM knows)
    if live == "queued" and state in ("interrupted", "killed", "failed"):
        return f"{state}, requeued"
    if state in ("running", "killed") and queue is not None and not live:
        return "killed" + (f" (SLURM: {queue})" if queue in ENDED_SLURM else "")
    return state


def unfinished(states: list[tuple[int, str]]) -> list[int]:
    """The tasks a resubmission should run: neither done nor queued or running now, nor
    blocked (BLOCKED: their files need a person)."""
    busy = ("queued", "running", "interrupted, requeued", "killed, requeued", "failed, requeued")
    return [i for i, state in states
            if state != DONE and state not in busy and not state.startswith(BLOCKED)]  # fmt: skip


def blocked(sweep: Sweep, states: list[tuple[int, str]]) -> list[str]:
    """A line for each task left out because its file needs a person."""
    return [f"mpifl: task {i} left out, {state}: move {sweep.task_output(i)} away to run it again"
            for i, state in states if state.startswith(BLOCKED)]  # fmt: skip


def array_spec(tasks: list[int]) -> str:
    """Task numbers as an --array value: "0-3,7,9-10"."""
    parts, i = [], 0
    while i < len(tasks):
        j = i
        while j + 1 < len(tasks) and tasks[j + 1] == tasks[j] + 1:
            j += 1
        parts.append(str(tasks[i]) if i == j else f"{tasks[i]}-{tasks[j]}")
        i = j + 1
    return ",".join(parts)
