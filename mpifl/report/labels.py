"""Name runs by what differs between them, and group the seeds of one setting."""

from __future__ import annotations

import os

from mpifl.results.reader import Run

BOOKKEEPING = ("run.name", "run.output", "run.seed", "run.threads")  # never tell settings apart


def run_labels(runs: list[Run]) -> list[str]:
    """Per run, "key=value, ..." over the config keys that take different values in the
    runs that have them (bookkeeping keys such as the seed aside; a method's own keys count
    only if two runs of such methods set them differently), so runs of one setting with
    different seeds share a label. With nothing differing, every run gets the first run's
    name."""
    differing = differing_keys(runs)
    if not differing:
        return [runs[0].name] * len(runs)
    return [
        ", ".join(f"{k}={r.settings[k]}" for k in differing if r.settings.get(k) is not None)
        for r in runs
    ]


def differing_keys(runs: list[Run]) -> list[str]:
    """The config keys (sorted) that tell the runs' settings apart (see `run_labels`)."""
    configs = [r.settings for r in runs]
    keys = sorted(set().union(*configs) - set(BOOKKEEPING))
    return [k for k in keys if len({repr(c[k]) for c in configs if c.get(k) is not None}) > 1]


def file_labels(paths: list[str]) -> tuple[str, list[str]]:
    """The folder the files share ("" if none) and each file's path below it."""
    try:
        folder = os.path.commonpath([os.path.dirname(p) or "." for p in paths])
    except ValueError:  # none, or absolute and relative paths mixed
        return "", list(paths)
    if folder in ("", "."):
        return "", list(paths)
    return folder, [os.path.relpath(p, folder) for p in paths]


def legend(labels: list[str], longest: int = 32) -> tuple[list[str], list[str]]:
    """Short names S1, S2, ... for labels longer than `longest` characters (each distinct
    label once, in order), and the legend lines "S1  label"; labels as they are if all
    are short."""
    if max(map(len, labels), default=0) <= longest:
        return labels, []
    short = {label: f"S{i}" for i, label in enumerate(dict.fromkeys(labels), 1)}
    return [short[label] for label in labels], [f"  {s}  {label}" for label, s in short.items()]


def run_seed(run: Run) -> int:
    """The run's seed (`run.seed`)."""
    return int(run.config["run"]["seed"])
