"""Name runs by what differs between them, and group the seeds of one setting."""

from __future__ import annotations

from mpifl.results.reader import Run, flat_config

BOOKKEEPING = ("run.name", "run.output", "run.seed", "run.threads")  # never tell settings apart


def run_labels(runs: list[Run]) -> list[str]:
    """Per run, "key=value, ..." over the config keys that take different values in the
    runs that have them (bookkeeping keys such as the seed aside; a method's own keys count
    only if two runs of such methods set them differently), so runs of one setting with
    different seeds share a label. With nothing differing, every run gets the first run's
    name."""
    configs = [flat_config(r.config) for r in runs]
    keys = sorted(set().union(*configs) - set(BOOKKEEPING))
    differing = [k for k in keys if len({repr(c[k]) for c in configs if c.get(k) is not None}) > 1]
    if not differing:
        return [runs[0].name] * len(runs)
    return [", ".join(f"{k}={c[k]}" for k in differing if c.get(k) is not None) for c in configs]


def run_seed(run: Run) -> int:
    """The run's seed (`run.seed`)."""
    return int(run.config["run"]["seed"])
