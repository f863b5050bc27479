"""Allreduce alpha-beta fit on this machine (run under mpiexec; prints JSON on rank 0).

mpiexec -n 2 python bench/allreduce.py
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from mpifl.comm import world

SIZES = (1, 1_000, 100_000, 1_000_000, 2_156_491)


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    comm = world()
    medians = {}
    for n in SIZES:
        buf = np.ones(n, dtype=np.float64)
        times = []
        for _ in range(15):
            comm.barrier()
            start = time.perf_counter()
            comm.allreduce_sum(buf)
            times.append(time.perf_counter() - start)
        medians[n] = float(np.median(times[3:]))
    if comm.rank == 0:
        sizes = np.array(SIZES, dtype=np.float64) * 8
        beta, alpha = np.polyfit(sizes, [medians[n] for n in SIZES], 1)
        print(json.dumps({"alpha": max(alpha, 0.0), "beta": beta, "medians": medians}))


if __name__ == "__main__":
    main()
