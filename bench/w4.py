"""W4: scaling of W1 over 1, 2 and 4 ranks (4 oversubscribed on 2 cores), and a cost model.

Cost model of a round with K trained clients on R ranks (P cores, model of n values):
  T(R) = ceil(K / R) * c * max(1, R / P) + T_allreduce(R) + T_fixed
  T_allreduce(R) = 2 (R - 1) alpha + 2 (R - 1) / R * 8 n beta     (ring; 0 for R = 1)
c (seconds per client) and T_fixed come from the 1-rank run; alpha and beta from an
Allreduce fit on this machine. The model is checked against the 2- and 4-rank runs, then
used with cluster-class alpha/beta to predict 64-1024 ranks for a 1000-client cohort.

    python -m bench.w4 [--smoke]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np

from bench.common import mpiexec, mpifl_run, run, tables, timed

PARAMS = 2_156_490 + 1  # the W1 model plus the weight accumulator
CLUSTER = {"alpha": 2e-6, "beta": 1 / 12.5e9}  # 100 Gbit/s InfiniBand-class fabric


def allreduce_fit(ranks: int) -> dict:
    out = run([mpiexec(), "-n", str(ranks), sys.executable, "bench/allreduce.py"])
    return json.loads(out.strip().splitlines()[-1])


def t_allreduce(r: int, alpha: float, beta: float, n: int = PARAMS) -> float:
    return 0.0 if r == 1 else 2 * (r - 1) * alpha + 2 * (r - 1) / r * 8 * n * beta


def predict(r: int, k: int, c: float, fixed: float, cores: int, alpha: float, beta: float) -> float:
    return math.ceil(k / r) * c * max(1.0, r / cores) + t_allreduce(r, alpha, beta) + fixed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="3 rounds of 4 clients, 1 and 2 ranks")
    smoke = p.parse_args().smoke
    sets = ("run.rounds=3", "round.cohort=4") if smoke else ("run.rounds=7",)
    cohort = 4 if smoke else 50
    cores = os.cpu_count() or 1
    measured = {}
    for r in (1, 2) if smoke else (1, 2, 4):
        rounds, ranks = tables(mpifl_run(r, "jobs/w1.toml", *sets))
        wall = timed(rounds["wall_time"], tail=1)
        comm = timed(ranks["comm_time"], tail=0)
        measured[r] = (float(np.median(wall)), float(np.median(comm)))
    one = measured[1][0]
    c = one / cohort  # seconds per client (the 1-rank round is all clients + fixed costs)
    fit = allreduce_fit(2)
    timed_rounds = int(sets[0].split("=")[1]) - 2
    print(f"W4 scaling of W1 ({cores} cores; medians of {timed_rounds} timed rounds)")
    print(f"  Allreduce fit (2 ranks, this machine): alpha {fit['alpha'] * 1e6:.1f} us, "
          f"beta {1 / fit['beta'] / 1e9:.2f} GB/s")  # fmt: skip
    print("  ranks  s/round  speedup  collectives/rank  model s/round  model error")
    for r, (wall, comm) in measured.items():
        model = predict(r, cohort, c, 0.0, cores, fit["alpha"], fit["beta"])
        print(f"  {r:>5}  {wall:7.3f}  {one / wall:7.2f}  {comm:16.3f}  {model:13.3f}  "
              f"{(model - wall) / wall:+10.1%}")  # fmt: skip
    print("  prediction, 1000-client cohort, cluster fabric (alpha 2 us, 12.5 GB/s), 1 core/rank:")
    for r in (64, 128, 256, 512, 1024):
        t = predict(r, 1000, c, 0.0, r, CLUSTER["alpha"], CLUSTER["beta"])
        ar = t_allreduce(r, **CLUSTER)
        print(f"  {r:>5} ranks: {t:7.3f} s/round (Allreduce {ar * 1000:.1f} ms, "
              f"{math.ceil(1000 / r)} clients/rank)")  # fmt: skip


if __name__ == "__main__":
    main()
