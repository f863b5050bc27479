"""Partial work on the quick start's fleet: FedAvg and FedProx with and without it.

Every setting runs jobs/quickstart.toml (30 rounds of 30 sampled clients, 3 s deadline)
or jobs/fedprox_digits.toml (mu = 0.01), with `round.partial_work` off or on. Per
setting, over the seeds: the client-rounds lost as `late` (sent nothing), those that
sent partial work, and the global test accuracy as mean and sample sd over seeds of
each run's mean over its last 5 evaluations. Results are the same on any rank count;
finished runs are kept and skipped (the script resumes).

    python analysis/partial_work.py [--seeds 0 1 2] [--ranks 1] [--out results/partial]
        [--smoke]
"""

from __future__ import annotations

import numpy as np
from runs import run_setting, seeds_parser

from mpifl.results import read_run

SETTINGS = {  # label -> (job, --set values)
    "FedAvg": ("jobs/quickstart.toml", ("round.partial_work=false",)),
    "FedAvg + partial work": ("jobs/quickstart.toml", ("round.partial_work=true",)),
    "FedProx (mu 0.01)": ("jobs/fedprox_digits.toml", ("round.partial_work=false",)),
    "FedProx (mu 0.01) + partial work": ("jobs/fedprox_digits.toml", ("round.partial_work=true",)),
}
COMMON = ("run.eval_clients=false",)
SMOKE = ("run.rounds=2", "fleet.clients=30", "round.cohort=6")
LAST = 5  # evaluations averaged at the end of each run


def main() -> None:
    args = seeds_parser(__doc__.splitlines()[0], "results/partial").parse_args()
    extra = COMMON + (SMOKE if args.smoke else ())
    print(f"{'setting':34} {'late/run':>9} {'partial/run':>12} {'trained/run':>12} "
          f"{'accuracy, last 5 evals':>24}")  # fmt: skip
    for label, (job, sets) in SETTINGS.items():
        late, partial, trained, accuracy = [], [], [], []
        for seed in args.seeds:
            result = read_run(run_setting(label, job, (*sets, *extra), seed, args.ranks, args.out))
            status = result.tables["participation"]["status"].astype(str).to_numpy()
            late.append((status == "late").sum())
            partial.append((status == "partial").sum())
            trained.append((status == "trained").sum())
            acc = result.tables["rounds"]["test_accuracy"].dropna().to_numpy()
            accuracy.append(acc[-LAST:].mean())
        sd = np.std(accuracy, ddof=1) if len(accuracy) > 1 else float("nan")
        print(f"{label:34} {np.mean(late):9.1f} {np.mean(partial):12.1f} "
              f"{np.mean(trained):12.1f} {np.mean(accuracy):15.3f} +- {sd:.3f}")  # fmt: skip
    print(f"(means over seeds {args.seeds}; accuracy: global test, sd over seeds)")


if __name__ == "__main__":
    main()
