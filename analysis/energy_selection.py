"""Energy-aware selection on the solar sensor fleet: accuracy, devices run flat, energy.

FedAvg on jobs/solar_sensors.toml (100 supercapacitor sensors on small solar cells, 20
sampled per hourly round, four virtual days) with `selection.name` = uniform or energy
(d = 2 x 20 candidates, the 20 with the most charge to spare). Per setting, the mean and
95% t interval over seeds of: the global test accuracy of the last 5 evaluations, the
sampled clients per run that declined for a low battery and that trained, the mean
number of devices with an empty battery at a round's end, the J of client work per run,
and the J and virtual hours to 0.95 (over the seeds that reached it). Finished runs are
kept and skipped.

    python analysis/energy_selection.py [--seeds 0 1 2 3 4] [--ranks 1]
        [--out results/energy_selection] [--smoke]
"""

from __future__ import annotations

import numpy as np
from runs import mean_interval, run_setting, seeds_parser

from mpifl.results import read_run

SELECTORS = ("uniform", "energy")
SMOKE = ("run.rounds=3", "fleet.clients=30", "round.cohort=6")
TARGET, LAST = 0.95, 5
FIGURES = ("accuracy, last 5", "low_battery/run", "trained/run", "flat devices",
           "J of work/run", f"J to {TARGET}", f"hours to {TARGET}")  # fmt: skip


def figures(path) -> list[float]:
    """One run's FIGURES."""
    run = read_run(path)
    rounds = run.tables["rounds"]
    evaluated = rounds.dropna(subset=["test_accuracy"])
    acc = evaluated["test_accuracy"].to_numpy()
    hit = np.flatnonzero(acc >= TARGET)
    upto = rounds[rounds["round"] <= evaluated["round"].iloc[hit[0]]] if len(hit) else None
    flat = run.tables["energy"].groupby("round")["flat"].sum().mean()
    return [
        acc[-LAST:].mean(),
        rounds["low_battery"].sum(),
        rounds["trained"].sum(),
        flat,
        rounds["energy"].sum(),
        upto["energy"].sum() if upto is not None else np.nan,
        upto["virtual_time"].iloc[-1] / 3600 if upto is not None else np.nan,
    ]


def main() -> None:
    args = seeds_parser(__doc__.splitlines()[0], "results/energy_selection")
    args.set_defaults(seeds=[0, 1, 2, 3, 4])
    args = args.parse_args()
    sets = SMOKE if args.smoke else ()
    print(f"{'selection':10}" + "".join(f"{f:>22}" for f in FIGURES))
    for name in SELECTORS:
        runs = [figures(run_setting(name, "jobs/solar_sensors.toml",
                                    (*sets, f"selection.name='{name}'"), seed, args.ranks,
                                    args.out))
                for seed in args.seeds]  # fmt: skip
        cells = [mean_interval([r[i] for r in runs]) for i in range(len(FIGURES))]
        print(f"{name:10}" + "".join(f"{c:>22}" for c in cells))
    print(f"(mean +- 95% t interval (seeds); seeds {args.seeds}; global test accuracy)")


if __name__ == "__main__":
    main()
