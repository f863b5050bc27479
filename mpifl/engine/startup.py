"""How a run starts: from round 1, from its last checkpoint, or not at all (complete).

Rank 0 decides while holding the output lock, and tells the other ranks. `--resume` is
what a requeued batch job always passes, so it must never dead-end: without a checkpoint
of this run it starts over (saying so), and on a completed run it does nothing.
"""

from __future__ import annotations

import shutil
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mpifl.config import Config
from mpifl.engine import checkpoint
from mpifl.errors import InputError
from mpifl.results.flat import flat_config
from mpifl.results.opening import read_attrs
from mpifl.results.status import effective, note_path
from mpifl.results.writer import refuse_existing


@dataclass(frozen=True)
class Start:
    """The decision: mode "fresh" | "resume" | "complete", the checkpoint folder when
    resuming, and a line for the user (empty for an ordinary fresh start)."""

    mode: str
    folder: str = ""
    note: str = ""


def decide(output: Path, cfg: Config, resume: bool, overwrite: bool) -> Start:
    """The start of a run of `cfg` into `output`; InputError if it must not run."""
    from mpifl.engine.assemble import torch_threads  # (imports torch: `submit` needs none)

    if resume and overwrite:
        raise InputError(
            "run error: --resume continues the output and --overwrite replaces it; pass one"
        )
    if not resume:
        refuse_existing(output, overwrite)
        return Start("fresh")
    if not output.exists():
        return Start("fresh", note=f"mpifl: --resume: {output} does not exist; starting at round 1")
    try:
        attrs = read_attrs(output)
        status, started = str(attrs["status"]), str(attrs["config"])
        run_id = str(attrs.get("run_id", ""))
    except (OSError, KeyError) as exc:
        raise InputError(
            f"resume error: cannot read {output} ({exc}); pass --overwrite to start over"
        ) from None
    _same_config(output, started, cfg.to_toml())
    _same_threads(output, int(attrs.get("threads_per_rank", 0)), torch_threads(cfg.run.threads))
    status, _ = effective(output, status, None)
    if status == "complete":
        return Start("complete", note=f"mpifl: {output} is already complete; nothing to do")
    ckpt = checkpoint.load(output, run_id)
    if ckpt is None:
        return Start(
            "fresh",
            note=f"mpifl: --resume: {output} ({status}) has no checkpoint of its own (it "
            "stopped before its first one); starting over at round 1",
        )
    return Start(
        "resume", str(ckpt.folder), f"mpifl: resuming {output} at round {ckpt.next_round + 1}"
    )


RESUMABLE_CHANGES = (
    "checkpoint.every",
    "state.cache_bytes",
    "emulation.time_scale",
    "callbacks.csv.enabled",
    "callbacks.csv.path",
    "callbacks.tensorboard.enabled",
    "callbacks.tensorboard.logdir",
)


def config_change(started: str, now: str, ignored: tuple[str, ...] = ()) -> str | None:
    """The first key (sorted) whose value differs between two configs (TOML text), as
    "KEY was OLD, now NEW", leaving out RESUMABLE_CHANGES and `ignored`; None if none."""
    old = flat_config(tomllib.loads(started), classes=True)
    new = flat_config(tomllib.loads(now), classes=True)
    skip = {*RESUMABLE_CHANGES, *ignored}
    differ = sorted(k for k in (set(old) | set(new)) - skip if old.get(k) != new.get(k))
    return f"{differ[0]} was {old.get(differ[0])!r}, now {new.get(differ[0])!r}" if differ else None


def _same_config(output: Path, started: str, now: str) -> None:
    """InputError unless the job's config is the one the run started with, up to keys that
    cannot change its results (RESUMABLE_CHANGES: checkpoint spacing, the client-state
    cache, the throttling pace, the logs; a log turned on at a resume holds the rounds
    before it too)."""
    change = config_change(started, now)
    if change is None:
        return
    raise InputError(
        f"resume error: the job's config differs from the one {output} started with: "
        f"{change} (only {', '.join(RESUMABLE_CHANGES)} may change on a resume)"
    )


def _same_threads(output: Path, started: int, now: int) -> None:
    """InputError unless the run resumes with the torch threads per rank it started with:
    how a client trains depends on them (kit.batched), and so its results."""
    if started and started != now:
        raise InputError(
            f"resume error: {output} ran with {started} torch threads per rank, this run "
            f"would use {now}; results would change: set run.threads = {started} (or "
            f"--cpus-per-task {started})"
        )


@contextmanager
def replaced(output: Path) -> Iterator[None]:
    """For `mpifl submit --overwrite`: move a run's files (result file, failure note,
    checkpoints) aside for the body (e.g. sbatch), delete them if it succeeds, put them back
    if it fails, so a refused submission loses nothing. The caller checks that no run
    holds the output's lock."""
    files = [output, note_path(output), checkpoint.folder_of(output)]
    moved = []
    for path in files:
        if path.exists():
            aside = path.with_name(f".{path.name}.replaced")
            path.rename(aside)
            moved.append((path, aside))
    try:
        yield
    except BaseException:
        for path, aside in moved:
            aside.rename(path)
        raise
    for _, aside in moved:
        if aside.is_dir():
            shutil.rmtree(aside, ignore_errors=True)
        else:
            aside.unlink(missing_ok=True)
