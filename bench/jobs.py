"""Training time per round of every job under jobs/, against another checkout.

Each job runs its first `--rounds` rounds (server steps for asynchronous jobs) on
`--ranks` ranks with this code, then with the checkout at `--baseline` (its own job
file of that name, its own package, `--baseline-set` overrides, e.g.
`train.vectorize=off` for an older version's one-by-one training), alternately,
`--repeats` times. Prints each job's local training time per round per rank
(ranks.train_time, rounds after the first; medians over repeats) and the ratio.

    python -m bench.jobs --baseline DIR [--baseline-set KEY=VALUE ...] [--only NAME ...]
                         [--ranks 2] [--rounds 6] [--repeats 1] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.common import ROOT, mpiexec
from mpifl.arguments import at_least, existing_folder
from mpifl.results import read_run

SMOKE = ("quickstart",)


def train_seconds(root: Path, ranks: int, job: str, sets: list[str]) -> float:
    """Local training seconds per round per rank of `job` run by the mpifl of `root`."""
    out = Path(tempfile.mkdtemp(prefix="mpifl-jobs-")) / "run.h5"
    overrides = [a for s in sets for a in ("--set", s)]
    cmd = [mpiexec(), "-n", str(ranks), sys.executable, "-m", "mpifl", "run",
           f"jobs/{job}.toml", "--output", str(out), *overrides]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(root))
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{job} failed in {root}:\n{proc.stderr[-2000:]}")
    per_rank = read_run(out).tables["ranks"]
    timed = per_rank[per_rank["round"] > 1] if per_rank["round"].max() > 1 else per_rank
    return float(timed["train_time"].sum() / len(timed))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", type=existing_folder, help="another checkout (default: this one)")
    p.add_argument("--baseline-set", dest="baseline_sets", action="append", default=[],
                   metavar="KEY=VALUE")  # fmt: skip
    p.add_argument("--only", nargs="*", help="job names (default: every job under jobs/)")
    p.add_argument("--ranks", type=at_least(1), default=2)
    p.add_argument("--rounds", type=at_least(1), default=6)
    p.add_argument("--repeats", type=at_least(1), default=1)
    p.add_argument("--smoke", action="store_true", help="the quick start, 2 rounds")
    args = p.parse_args()
    baseline = (args.baseline or ROOT).resolve()
    names = args.only or sorted(f.stem for f in (ROOT / "jobs").glob("*.toml"))
    for checkout in dict.fromkeys((ROOT.resolve(), baseline)):
        unknown = [n for n in names if not (checkout / "jobs" / f"{n}.toml").is_file()]
        if unknown:
            p.error(f"no job {', '.join(unknown)} in {checkout / 'jobs'}")
    rounds = 2 if args.smoke else args.rounds
    sets = [f"run.rounds={rounds}", "run.eval_every=1000"]
    print(f"training s/round/rank, {args.ranks} ranks, first {rounds} rounds; this code "
          f"against {baseline} {' '.join(args.baseline_sets)}")  # fmt: skip
    print(f"  {'job':28s} {'this':>9s} {'baseline':>9s} {'ratio':>7s}")
    for name in SMOKE if args.smoke else names:
        ours, theirs = [], []
        for _ in range(args.repeats):
            ours.append(train_seconds(ROOT, args.ranks, name, sets))
            theirs.append(train_seconds(baseline, args.ranks, name, sets + args.baseline_sets))
        a, b = float(np.median(ours)), float(np.median(theirs))
        print(f"  {name:28s} {a:9.4f} {b:9.4f} {a / b:6.2f}x")


if __name__ == "__main__":
    main()
