"""W3: stateful clients at scale (FedMRL, 10^4 clients, 2 ranks).

Runs jobs/w3_fedmrl_scale.toml twice in the same invocation: with the client-state cache
bound at 1 GiB per rank, and with every state kept in memory. Prints peak RSS per rank,
seconds per round (medians, first and last rounds left out) and state bytes read and
written per round, and the time ratio.

    python -m bench.w3 [--smoke]
"""

from __future__ import annotations

import argparse

import numpy as np

from bench.common import mpifl_run, tables, timed

JOB = "jobs/w3_fedmrl_scale.toml"
BOUND = 2**30


def measure(*sets: str) -> dict[str, float]:
    rounds, ranks = tables(mpifl_run(2, JOB, *sets))
    per_round = ranks[ranks["round"] > 0]

    def by_round(field: str) -> list[float]:
        return [
            per_round[field][per_round["round"] == t].sum() for t in np.unique(per_round["round"])
        ]

    return {
        "seconds": float(np.median(timed(rounds["wall_time"], tail=1))),
        "rss": max(ranks["peak_rss"][ranks["rank"] == r].max() for r in (0, 1)) / 2**20,
        "ram": max(ranks["state_ram_bytes"]) / 2**20,
        "read": float(np.median(by_round("state_bytes_read"))) / 2**20,
        "written": float(np.median(by_round("state_bytes_written"))) / 2**20,
    }


SMOKE = ("run.rounds=2", "round.cohort=4", "fleet.clients=100")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="2 rounds of 4 clients")
    smoke = SMOKE if p.parse_args().smoke else ()
    bounded = measure(f"state.cache_bytes={BOUND}", *smoke)
    memory = measure("state.cache_bytes=1000000000000", *smoke)
    print("W3 FedMRL, 10^4 clients, cohort 100, 2 ranks (medians over rounds 1..10)")
    for name, m in (("cache bound 1 GiB/rank", bounded), ("all state in memory", memory)):
        print(f"  {name:<24} {m['seconds']:.2f} s/round, peak RSS {m['rss']:.0f} MiB/rank, "
              f"state in RAM {m['ram']:.0f} MiB/rank, state read {m['read']:.0f} MiB/round, "
              f"written {m['written']:.0f} MiB/round")  # fmt: skip
    ratio = bounded["seconds"] / memory["seconds"]
    limit = BOUND / 2**20 + 500
    print(f"  bounded / in memory: {ratio:.3f} (target <= 1.2); "
          f"peak RSS {bounded['rss']:.0f} MiB (target <= bound + 500 = {limit:.0f})")  # fmt: skip


if __name__ == "__main__":
    main()
