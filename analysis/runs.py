"""Run one setting of an analysis script for one seed, resumably (the scripts' shared step)."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mpifl.arguments import at_least, exit_with, output_folder
from mpifl.results.opening import read_attrs


def folder_name(label: str) -> str:
    """The folder of a setting's runs under --out: its label with anything but letters,
    digits, '.', '_' and '-' made '_'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_")


def run_setting(
    label: str, job: str, sets: Sequence[str], seed: int, ranks: int, out: Path
) -> Path:
    """`mpifl run JOB --set ... run.seed=SEED` into out/<label>/seed_<SEED>.h5 (under
    `mpiexec -n ranks` if ranks > 1), skipped if that file holds a complete run; the
    file. Exits naming the setting if the run fails."""
    path = out / folder_name(label) / f"seed_{seed}.h5"
    if path.exists():
        try:
            status = read_attrs(path).get("status")
        except OSError as exc:  # not a run of ours: never overwritten
            exit_with(
                f"{Path(sys.argv[0]).stem}: {path} is not a result file ({exc}): move it or "
                "choose another --out"
            )
        if status == "complete":
            return path
    cmd = [sys.executable, "-m", "mpifl", "run", job, "--output", str(path), "--overwrite"]
    if ranks > 1:
        cmd = [str(Path(sys.executable).parent / "mpiexec"), "-n", str(ranks), *cmd]
    cmd += [a for s in (*sets, f"run.seed={seed}") for a in ("--set", s)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{label} seed {seed} failed:\n{proc.stderr}")
    return path


def mean_interval(values: Sequence[float]) -> str:
    """Mean +- the half-width of its 95% t interval over the values (n)."""
    from scipy.stats import t  # (scikit-learn's dependency)

    done = np.asarray([v for v in values if np.isfinite(v)], dtype=np.float64)
    if not len(done):
        return "not reached"
    if len(done) == 1:
        return f"{done[0]:.4g} (1)"
    half = t.ppf(0.975, len(done) - 1) * done.std(ddof=1) / np.sqrt(len(done))
    return f"{done.mean():.4g} +- {half:.2g} ({len(done)})"


def seeds_parser(description: str, out: str) -> argparse.ArgumentParser:
    """The scripts' shared options: --seeds (0 1 2), --ranks (1), --out, --smoke."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seeds", type=at_least(0), nargs="+", default=[0, 1, 2])
    parser.add_argument("--ranks", type=at_least(1), default=1)
    parser.add_argument("--out", type=output_folder, default=Path(out))
    parser.add_argument("--smoke", action="store_true", help="a tiny run of every setting")
    return parser
