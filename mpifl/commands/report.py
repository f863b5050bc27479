"""`mpifl report RUN.h5 [RUN2.h5 ...] [--csv | --markdown] [--plot DIR] [--target ACC]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from mpifl.errors import InputError


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `report`."""
    p = sub.add_parser("report", help="tables and figures from result files")
    p.add_argument("runs", nargs="+", help="result files (.h5)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true", help="CSV instead of a text table")
    fmt.add_argument("--markdown", action="store_true", help="Markdown tables")
    p.add_argument("--plot", metavar="DIR", help="write PNG figures into DIR")
    p.add_argument("--target", type=float, default=0.9, help="accuracy for time-to-target")
    p.add_argument(
        "--per-run", action="store_true", help="one row per run instead of per setting (seeds)"
    )


def run(args: argparse.Namespace) -> int:
    """Print the summary and class tables (runs named by the config keys that differ
    between them, seeds of one setting grouped: mean and sd); write figures with --plot."""
    import pandas as pd  # (imported here: not needed for `mpifl --help`)

    from mpifl.report.labels import run_labels, run_seed
    from mpifl.report.summary import by_device_class, by_setting, render, summarize
    from mpifl.results.reader import read_run

    runs = []
    for path in args.runs:
        try:
            runs.append(read_run(path))
        except (OSError, KeyError) as exc:
            raise InputError(f"report error: {path}: not an mpifl result file ({exc})") from None
    fmt = "csv" if args.csv else "markdown" if args.markdown else "text"
    labels = run_labels(runs)
    rows = pd.DataFrame(
        [summarize(r, args.target) | {"label": label, "seed": run_seed(r)}
         for r, label in zip(runs, labels, strict=True)]
    )  # fmt: skip
    if args.per_run:
        summary = rows.drop(columns="run").rename(columns={"label": "run"})
    else:
        summary = by_setting(rows)
    classes = pd.concat([by_device_class(r, label) for r, label in zip(runs, labels, strict=True)])
    if not args.per_run:  # client-rounds per class: mean over a setting's seeds
        classes = classes.groupby(["run", "class"], sort=False).mean().reset_index()
    print(render(summary, fmt), end="")
    if fmt != "csv":
        print()
        print(render(classes, fmt), end="")
    if args.plot:
        from mpifl.report.plots import write_all

        for path in write_all(runs, labels, Path(args.plot)):
            print(f"wrote {path}")
    return 0
