"""W2: fleet scale. Build a 10^6-client fleet, plan rounds, run 2 ranks on it.

Prints: fleet build time, data set (client sizes) build time, planning time per round at
10^4 / 10^5 / 10^6 clients (is it independent of fleet size?), peak RSS per rank and
HDF5 bytes per round from a real 2-rank run of jobs/w2_fleet_scale.toml, and what the
batteries cost: the same run with `energy.batteries = false` (no battery tracked; the
energy columns are still written), its peak RSS and seconds per round as ratios.

    python -m bench.w2 [--smoke]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from bench.common import mpifl_run, tables, timed
from mpifl.comm import Comm
from mpifl.data import build_dataset
from mpifl.engine.plan import Planner
from mpifl.fleet import build_fleet
from mpifl.fleet.availability import build_availability
from mpifl.jobs import load_job
from mpifl.kit import Distiller, Evaluator, MethodContext
from mpifl.methods import method_class
from mpifl.models import spec_from_config
from mpifl.results import read_run
from mpifl.results.writer import TABLES

JOB = "jobs/w2_fleet_scale.toml"


def plan_seconds(n_clients: int, rounds: int = 20) -> tuple[float, float, float]:
    """(fleet build s, data build s, median planning s per round) at n_clients."""
    cfg = load_job(JOB, [f"fleet.clients={n_clients}"])
    start = time.perf_counter()
    fleet = build_fleet(cfg.fleet, n_clients, cfg.run.seed)
    fleet_s = time.perf_counter() - start
    start = time.perf_counter()
    data = build_dataset(cfg.data, n_clients, cfg.run.seed)
    data_s = time.perf_counter() - start
    spec = spec_from_config(cfg.model, data.input_shape, data.n_classes)
    comm = Comm()
    ctx = MethodContext(cfg, data, fleet, spec, Evaluator(comm), Distiller(comm, 40))
    method = method_class("fedavg")(ctx)
    availability = build_availability(cfg.emulation, fleet, cfg.run.seed)
    planner = Planner(cfg.run.seed, fleet, data.n_train, cfg.round, availability, 2)
    times = []
    for t in range(rounds):
        start = time.perf_counter()
        planner.plan(t, 0.0, method.workload)
        times.append(time.perf_counter() - start)
    return fleet_s, data_s, float(np.median(times[1:]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="fleets of 10^3, 2 rounds of the run")
    smoke = p.parse_args().smoke
    sizes = (10**3, 2 * 10**3) if smoke else (10**4, 10**5, 10**6)
    run_sets = ("fleet.clients=2000", "round.cohort=20", "run.rounds=2") if smoke else ()
    print("W2 fleet scale (medians)")
    for n in sizes:
        fleet_s, data_s, plan_s = plan_seconds(n, rounds=3 if smoke else 20)
        print(f"  {n:>9} clients: fleet build {fleet_s:.3f} s, data sizes {data_s:.3f} s, "
              f"planning {plan_s * 1000:.1f} ms/round")  # fmt: skip
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    print(f"  this process ({len(sizes)} fleets built): peak RSS {peak:.0f} MiB")
    path = mpifl_run(2, JOB, *run_sets)
    rounds, ranks = tables(path)
    per_rank = [ranks["peak_rss"][ranks["rank"] == r].max() / 2**20 for r in (0, 1)]
    print(f"  2-rank run of {JOB}: {np.median(timed(rounds['wall_time'])):.2f} s/round")
    print(f"    peak RSS per rank: {per_rank[0]:.0f} MiB, {per_rank[1]:.0f} MiB  (target < 1024)")
    print(f"    HDF5 file {path.stat().st_size / 2**20:.1f} MiB; per round (participation + "
          f"rounds + ranks) {_bytes_per_round(path) / 2**10:.0f} KiB")  # fmt: skip
    _batteries_cost(run_sets if smoke else ("run.rounds=10",), 1 if smoke else 2)


def _batteries_cost(sets: tuple[str, ...], repeats: int) -> None:
    """The 2-rank run with batteries against `energy.batteries = false`, alternated
    `repeats` times: peak RSS per rank and median s/round over the runs of each, as
    ratios."""
    runs: dict[bool, list[tuple[np.ndarray, np.ndarray]]] = {True: [], False: []}
    for on in (True, False) * repeats:
        path = mpifl_run(2, JOB, *sets, f"energy.batteries={str(on).lower()}")
        rounds, ranks = tables(path)
        peak = np.array([ranks["peak_rss"][ranks["rank"] == r].max() for r in (0, 1)])
        runs[on].append((peak, timed(rounds["wall_time"])))
    peak = {on: np.max([p for p, _ in runs[on]], axis=0) for on in runs}
    median = {on: float(np.median(np.concatenate([t for _, t in runs[on]]))) for on in runs}
    ratios = ", ".join(f"{a / b:.3f}" for a, b in zip(peak[True], peak[False], strict=True))
    print(f"  batteries on / off (energy.batteries; {repeats} runs each, alternated): peak RSS per "
          f"rank {ratios}; s/round {median[True]:.3f} / {median[False]:.3f} = "
          f"{median[True] / median[False]:.3f}  (target <= 1.10)")  # fmt: skip


def _bytes_per_round(path) -> float:
    run = read_run(path)
    names = ("participation", "rounds", "ranks", "eval", "server")
    total = sum(TABLES[name].itemsize * len(run.tables[name]) for name in names)
    return total / len(run.tables["rounds"])


if __name__ == "__main__":
    main()
