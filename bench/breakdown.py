"""Where a client's time goes: one round's clients trained in-process (one rank, no MPI),
with train.group = 1 and at its default, accounted by cProfile per client: data (building
the client's task), training, own-test accuracy, staging and exact commit, other.
cProfile inflates call-heavy code, one client at a time most: read the split, not the
totals' ratio.

    python -m bench.breakdown JOB [--set KEY=VALUE ...] [--groups 1,256] [--smoke]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
from pathlib import Path

from mpifl.arguments import at_least, existing_file
from mpifl.comm import Comm
from mpifl.engine.assemble import assemble
from mpifl.engine.emulation import ClientRunner
from mpifl.engine.signals import StopSignal
from mpifl.errors import InputError
from mpifl.jobs import load_job
from mpifl.kit import Accumulators

PARTS = {  # part -> (file, function) of the calls whose cumulative time it is
    "data": (("engine/emulation.py", "task"),),
    "training": (("kit/training.py", "sgd_epochs"), ("kit/batched.py", "train_group")),
    "own-test accuracy": (
        ("kit/training.py", "client_accuracies"),
        ("kit/batched.py", "group_scores"),
    ),
    "staging + exact commit": (("kit/accumulate.py", "add"), ("kit/accumulate.py", "commit")),
}


def breakdown(job: str, sets: list[str], group: int) -> tuple[int, dict[str, float]]:
    """(clients trained, ms per client by part) of round 1 of `job` on one rank, with
    `group` clients at most in a batched group."""
    output = Path(tempfile.mkdtemp(prefix="mpifl-breakdown-")) / "run.h5"
    cfg = load_job(job, [*sets, f"train.group={group}", f"run.output={output}"])
    parts = assemble(cfg, Comm(), output)
    method = parts.method
    plan = parts.planner.plan(0, 0.0, method.workload)
    rows = plan.rows[plan.scheduled(0)]
    acc = Accumulators(method.accumulator_sizes(), 40, 1 / max(plan.total_samples, 1))
    runner = ClientRunner(cfg, method, parts.data, Comm(), StopSignal())
    profile = cProfile.Profile()
    profile.enable()
    runner.run(0, rows, acc)
    profile.disable()
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    n = max(len(rows), 1)

    def ms(*calls: tuple[str, str]) -> float:
        hits = [v[3] for k, v in stats.items() if any(k[0].endswith(f) and k[2] == name
                                                     for f, name in calls)]  # fmt: skip
        return sum(hits) / n * 1e3

    out = {"total": ms(("engine/emulation.py", "run"))}
    out.update({part: ms(*calls) for part, calls in PARTS.items()})
    out["other"] = out["total"] - sum(out[part] for part in PARTS)
    return len(rows), out


def groups(text: str) -> list[int]:
    """--groups: comma-separated group sizes, each at least 1."""
    return [at_least(1)(part) for part in text.split(",")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("job", type=existing_file)
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--groups", type=groups, default="1,256",
                   help="train.group values, comma-separated")  # fmt: skip
    p.add_argument("--smoke", action="store_true", help="a round of 8 clients")
    args = p.parse_args()
    sets = [*args.sets, "round.cohort=8", "fleet.clients=100"] if args.smoke else args.sets
    try:
        load_job(args.job, sets)  # (refused here, before any run)
    except InputError as exc:
        p.error(str(exc))
    print(f"per-client time in ms, one rank, {args.job} {' '.join(args.sets)}")
    for group in args.groups:
        n, parts = breakdown(args.job, sets, group)
        split = ", ".join(f"{part} {value:.3f}" for part, value in parts.items())
        print(f"  train.group = {group}: {n} clients; {split}")


if __name__ == "__main__":
    main()
