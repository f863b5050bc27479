"""FedBuff against synchronous FedAvg on the quick start's mixed fleet, deadlines removed.

Both train the quick start's CNN on digits. FedAvg runs jobs/quickstart.toml with
`round.deadline = inf`, so a synchronous round waits for its slowest client: 30 rounds
of 30 sampled clients. FedBuff runs jobs/fedbuff_digits.toml: 30 clients in flight, a
step every K = 10 arrivals, polynomial staleness weights s = (1 + tau)^-1/2, and enough
steps to pass FedAvg's virtual time. It evaluates every 2 steps (20 updates), about as
often per update as FedAvg, which evaluates every round (about 18 updates).

For each seed the script takes the global test accuracy reached by given virtual times
and by given bytes (down + up). At a budget B it is the accuracy of the latest evaluated
model, averaged over the last quarter of the budget, (3B/4, B]: the same window for
both methods, in the budget's own unit. Then the mean and sample sd over the seeds.

    python analysis/async_demo.py [--seeds 0 1 2] [--ranks 2] [--smoke]
        [--variant LABEL KEY=VALUE ...]   (also FedBuff with other settings, repeatable)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from runs import folder_name, run_setting

from mpifl.arguments import at_least, output_folder
from mpifl.errors import InputError
from mpifl.jobs import load_job
from mpifl.results import Run, read_run

METHODS = {  # method -> (job, --set values)
    "fedavg": ("jobs/quickstart.toml", ("round.deadline=inf", "run.eval_clients=false")),
    "fedbuff": ("jobs/fedbuff_digits.toml", ()),
}
SMOKE = {
    "fedavg": ("run.rounds=3", "fleet.clients=30", "round.cohort=6"),
    "fedbuff": ("run.rounds=3", "run.eval_every=1", "fleet.clients=30",
                "asynchronous.concurrency=6", "algorithm.buffer=3"),
}  # fmt: skip
WINDOW = 0.25  # the share of a budget, at its end, over which accuracy is averaged
GRID = 200  # points of the window
TIMES = (10.0, 20.0, 40.0, 60.0)  # virtual seconds, within every run's span
MEGABYTES = (15.0, 30.0, 55.0)  # within every FedAvg run's total


def megabytes_by(run: Run, times: np.ndarray) -> np.ndarray:
    """Megabytes sent and received by each server step's time, as they happen: uploads
    that arrived by then, downloads dispatched before it (those at the step's time get
    the next model). A round's bytes in the rounds table are instead those of the
    clients dispatched in it, uploads included, which for an asynchronous method arrive
    in later steps."""
    part = run.tables["participation"]

    def by(when: np.ndarray, size: np.ndarray, side: str) -> np.ndarray:
        order = np.argsort(when, kind="stable")
        total = np.concatenate([[0.0], np.cumsum(size[order].astype(np.float64))])
        return total[np.searchsorted(when[order], times, side=side)]

    sent = part["bytes_up"].to_numpy() > 0
    down = by(part["dispatch_time"].to_numpy(), part["bytes_down"].to_numpy(), "left")
    up = by(part["arrival_time"].to_numpy()[sent], part["bytes_up"].to_numpy()[sent], "right")
    return (down + up) / 1e6


def at_budgets(path: Path, column: str, budgets: tuple[float, ...]) -> list[float]:
    """Per budget B of `column` (virtual time, or megabytes sent and received), the
    accuracy of the latest evaluated model averaged over (B (1 - WINDOW), B]; NaN if the
    window starts before the first evaluation or B is beyond the run's end."""
    run = read_run(path)
    rounds = run.tables["rounds"]
    times = rounds["virtual_time"].to_numpy()
    spent = times if column == "time" else megabytes_by(run, times)
    evaluated = ~np.isnan(rounds["test_accuracy"].to_numpy())
    end = spent[-1]
    spent, accuracy = spent[evaluated], rounds["test_accuracy"].to_numpy()[evaluated]
    out = []
    for budget in budgets:
        if budget > end:
            out.append(float("nan"))
            continue
        grid = np.linspace(budget * (1 - WINDOW), budget, GRID + 1)[1:]
        latest = np.searchsorted(spent, grid, side="right") - 1  # last evaluation <= point
        out.append(float(accuracy[latest].mean()) if latest.min() >= 0 else float("nan"))
    return out


def cell(values: np.ndarray) -> str:
    """mean ± sample sd over seeds; a dash if a seed had no evaluation by then."""
    if np.isnan(values).any():
        return "–"
    sd = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():.4f} ± {sd:.4f}"


def table(title: str, unit: str, budgets: tuple[float, ...], rows: dict[str, np.ndarray]) -> str:
    head = f"| method | {' | '.join(f'{b:g} {unit}' for b in budgets)} |"
    lines = [title, "", head, "|---" * (len(budgets) + 1) + "|"]
    for method, values in rows.items():  # values: (seeds, budgets)
        cells = [cell(v) for v in values.T]
        lines.append(f"| {method} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=at_least(0), nargs="+", default=[0, 1, 2])
    p.add_argument("--ranks", type=at_least(1), default=2)
    p.add_argument("--out", type=output_folder, default=Path("results/async_demo"))
    p.add_argument("--smoke", action="store_true", help="3 rounds of a small fleet, 1 seed")
    p.add_argument(
        "--variant", nargs="+", action="append", default=[], metavar=("LABEL", "KEY=VALUE"),
        help="also run FedBuff with these settings (a row labelled LABEL)",
    )  # fmt: skip
    args = p.parse_args()
    seeds = args.seeds[:1] if args.smoke else args.seeds
    settings = {m: (job, [*sets, *(SMOKE[m] if args.smoke else ())])
                for m, (job, sets) in METHODS.items()}  # fmt: skip
    for label, *sets in args.variant:
        if folder_name(label) in {folder_name(m) for m in settings} | {"", ".", ".."}:
            p.error(f"--variant {label!r}: its runs' folder would be another row's or not one")
        settings[label] = (settings["fedbuff"][0], [*settings["fedbuff"][1], *sets])
        try:  # (every variant's settings checked before anything runs)
            load_job(settings[label][0], settings[label][1])
        except InputError as exc:  # (ConfigError included)
            p.error(f"--variant {label}: {exc}")
    paths = {label: [run_setting(label, job, sets, s, args.ranks, args.out) for s in seeds]
             for label, (job, sets) in settings.items()}  # fmt: skip
    for column, unit, budgets, title in (
        ("time", "s", TIMES, "Global test accuracy by virtual time"),
        ("bytes", "MB", MEGABYTES, "Global test accuracy by bytes sent and received"),
    ):
        rows = {m: np.array([at_budgets(f, column, budgets) for f in files])
                for m, files in paths.items()}  # fmt: skip
        print(table(f"{title} (mean ± sd over seeds {seeds})", unit, budgets, rows), end="\n\n")
    for method, files in paths.items():
        runs = [read_run(f) for f in files]
        vt = np.mean([r.tables["rounds"]["virtual_time"].iloc[-1] for r in runs])
        part = [r.tables["participation"] for r in runs]
        applied = pd.concat([x[x["status"] == "trained"] for x in part])
        weight = applied["samples"] * applied["update_weight"]
        by_class = applied.groupby("device_class", observed=True)
        count = by_class.size() / len(applied)
        weighted = weight.groupby(applied["device_class"], observed=True).sum() / weight.sum()
        stale = by_class["staleness"].mean()
        mix = "; ".join(f"{c} {count[c]:.1%} of updates, {weighted[c]:.1%} of the weight "
                        f"(samples x staleness weight), staleness {stale[c]:.1f}"
                        for c in count.index)  # fmt: skip
        print(f"{method}: {len(runs[0].tables['rounds'])} server steps, {vt:.1f} virtual s "
              f"(mean over seeds), {len(applied) / len(runs):.0f} updates applied, mean "
              f"staleness {applied['staleness'].mean():.2f}; by device class: {mix}")  # fmt: skip


if __name__ == "__main__":
    main()
