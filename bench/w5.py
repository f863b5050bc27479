"""W5: tiny-model fleet throughput, clients trained one by one against batched groups.

W2's fleet and MLP (jobs/w2_fleet_scale.toml) with 5 local epochs at batch 4 and 1000
clients per round on 2 ranks (--ranks), 1 torch thread each; then the quick-start CNN
on digits (jobs/quickstart.toml), its 30 rounds, and the same CNN with every client
training every round (cohort 100, no deadline, always online: ~90 clients a round, as
in a fleet). Each runs with train.group = 1 (one client at a time) and at its default
(batched groups), alternately, `--repeats` times in this invocation; both give the same
results. Prints the medians of client updates per second per core
(clients trained / seconds in local training, summed over ranks, rounds after the
first), the median ratio with each run's; the step bound: the clients' SGD steps per
step of their batched groups (a group steps until its longest client is done), which
is what batching gains if a group's step costs what one client's step costs; and the
arithmetic limit: the clients' training FLOPs (participation.flops) at this core's
measured fp32 matrix-multiply rate.

    python -m bench.w5 [--ranks 2] [--repeats 3] [--smoke]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import pandas as pd
import torch

from bench.common import mpifl_run
from mpifl.arguments import at_least
from mpifl.results import read_run

W2 = "jobs/w2_fleet_scale.toml"
W2_SETS = ("train.epochs=5", "train.batch_size=4", "run.rounds=4", "run.threads=1")
QUICKSTART = "jobs/quickstart.toml"
QUICKSTART_SETS = ("run.threads=1", "run.eval_clients=false")
WHOLE_FLEET_SETS = (
    "round.cohort=100", "round.deadline=inf", "emulation.availability='always'", "run.rounds=10"
)  # fmt: skip
SMOKE_SETS = ("fleet.clients=2000", "round.cohort=40", "run.rounds=2")


def gemm_flops(size: int = 512, repeats: int = 20) -> float:
    """fp32 FLOP/s of one core on a square matrix product."""
    torch.set_num_threads(1)
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def step_bound(part: pd.DataFrame, epochs: int, batch_size: int) -> float:
    """The trained clients' SGD steps per step of their batched groups (participation
    rows of a batched run; a group's id is its round's)."""
    trained = part[(part["status"] == "trained") & (part["group"] >= 0)]
    steps = epochs * -(-trained["samples"] // batch_size)
    longest = steps.groupby([trained["round"], trained["group"]]).max()
    return float(steps.sum() / longest.sum())


def throughput(ranks: int, job: str, *sets: str) -> tuple[float, float, float]:
    """(client updates per second per core, median training FLOPs per client, step
    bound: NaN for a run that trains one by one), over the rounds after the first."""
    run = read_run(mpifl_run(ranks, job, *sets))
    per_rank, part = run.tables["ranks"], run.tables["participation"]
    first = 1 if per_rank["round"].max() > 1 else 0
    timed = per_rank[per_rank["round"] > first]
    rate = timed["clients"].sum() / max(timed["train_time"].sum(), 1e-9)
    part = part[part["round"] > first]
    flops = float(np.median(part["flops"][part["status"] == "trained"]))
    train = run.config["train"]
    batched = (part["group"] >= 0).any()
    bound = step_bound(part, train["epochs"], train["batch_size"]) if batched else math.nan
    return rate, flops, bound


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="2 rounds of 40 clients, the MLP only")
    p.add_argument("--ranks", type=at_least(1), default=2, help="MPI ranks (default 2)")
    p.add_argument("--repeats", type=at_least(1), default=3,
                   help="alternating one-by-one and batched runs of each (default 3)")  # fmt: skip
    args = p.parse_args()
    peak = gemm_flops()
    smoke = SMOKE_SETS if args.smoke else ()
    print(f"W5 tiny-model throughput ({args.ranks} ranks x 1 thread; this core: "
          f"{peak / 1e9:.1f} GFLOP/s)")  # fmt: skip
    settings = [
        ("W2 fleet, MLP [32]", W2, (*W2_SETS, *smoke), ">= 20x"),
        ("quick start, CNN", QUICKSTART, QUICKSTART_SETS, ">= 5x"),
        ("quick-start CNN, every client every round", QUICKSTART,
         (*QUICKSTART_SETS, *WHOLE_FLEET_SETS), "none"),
    ]  # fmt: skip
    for name, job, sets, target in settings[:1] if args.smoke else settings:
        offs, ons, bounds = [], [], []
        for _ in range(1 if args.smoke else args.repeats):
            off, flops, _ = throughput(args.ranks, job, *sets, "train.group=1")
            offs.append(off)
            on, _, bound = throughput(args.ranks, job, *sets)
            ons.append(on)
            bounds.append(bound)
        ratios = [on / off for on, off in zip(ons, offs, strict=True)]
        off, on, limit = float(np.median(offs)), float(np.median(ons)), peak / flops
        print(f"  {name}: {flops / 1e6:.2f} MFLOP per client update; medians of "
              f"{len(ratios)} alternating runs")  # fmt: skip
        print(f"    one by one {off:9.1f} client updates/s/core")
        print(f"    batched    {on:9.1f} client updates/s/core   "
              f"{np.median(ratios):5.1f}x (target {target}; runs: "
              f"{', '.join(f'{r:.1f}x' for r in ratios)})")  # fmt: skip
        print(f"    step bound {np.median(bounds):9.2f} client steps per group step")
        print(f"    arithmetic limit {limit:9.1f} client updates/s/core "
              f"(batched at {on / limit:.1%})")  # fmt: skip


if __name__ == "__main__":
    main()
