"""Client selection on the quick start's fleet: virtual time to a target accuracy.

FedAvg on jobs/quickstart.toml (100 clients, 30 sampled per round, 3 s deadline) with
`selection.name` = uniform, oort or power_of_choice at their defaults, for 40 rounds. Per
setting and target: the virtual time of the first evaluation whose global test accuracy
reaches it, mean and sample sd over the seeds that reached it (how many did, in
brackets); then the client-rounds lost as late per run, and the accuracy of the last 5
evaluations (mean and sd over seeds). Finished runs are kept and skipped.

    python analysis/selection.py [--seeds 0 1 2] [--ranks 1] [--out results/selection]
        [--smoke]
"""

from __future__ import annotations

import numpy as np
from runs import run_setting, seeds_parser

from mpifl.results import read_run

SELECTORS = ("uniform", "oort", "power_of_choice")
COMMON = ("run.rounds=40", "run.eval_clients=false")
SMOKE = ("run.rounds=3", "fleet.clients=30", "round.cohort=6")
TARGETS = (0.85, 0.90, 0.93)
LAST = 5


def summary(values: list[float]) -> str:
    """Mean +- sample sd (n) of the finite values."""
    done = [v for v in values if np.isfinite(v)]
    if not done:
        return "not reached"
    sd = np.std(done, ddof=1) if len(done) > 1 else float("nan")
    return f"{np.mean(done):6.1f} +- {sd:4.1f} ({len(done)})"


def main() -> None:
    args = seeds_parser(__doc__.splitlines()[0], "results/selection").parse_args()
    sets = COMMON + (SMOKE if args.smoke else ())
    head = "".join(f"{f's to {t:.2f}':>24}" for t in TARGETS)
    print(f"{'selection':16}{head} {'late/run':>9} {'accuracy, last 5':>18}")
    for name in SELECTORS:
        times: dict[float, list[float]] = {t: [] for t in TARGETS}
        late, final = [], []
        for seed in args.seeds:
            path = run_setting(name, "jobs/quickstart.toml", (*sets, f"selection.name='{name}'"),
                               seed, args.ranks, args.out)  # fmt: skip
            result = read_run(path)
            rounds = result.tables["rounds"].dropna(subset=["test_accuracy"])
            acc, clock = rounds["test_accuracy"].to_numpy(), rounds["virtual_time"].to_numpy()
            for t in TARGETS:
                hit = np.flatnonzero(acc >= t)
                times[t].append(float(clock[hit[0]]) if len(hit) else float("nan"))
            status = result.tables["participation"]["status"].astype(str).to_numpy()
            late.append((status == "late").sum())
            final.append(acc[-LAST:].mean())
        cells = "".join(f"{summary(times[t]):>24}" for t in TARGETS)
        sd = np.std(final, ddof=1) if len(final) > 1 else float("nan")
        print(f"{name:16}{cells} {np.mean(late):9.1f} {np.mean(final):9.3f} +- {sd:.3f}")
    print(f"(virtual seconds; seeds {args.seeds}; global test accuracy)")


if __name__ == "__main__":
    main()
