"""`mpifl report RUN.h5 [RUN2.h5 ...] [--csv | --markdown] [--plot DIR] [--target ACC]`."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from mpifl.errors import InputError

EXAMPLES = """examples:
  mpifl report results/a.h5 results/b.h5           # a row per setting (seeds grouped)
  mpifl report sweeps/lr/task_*.h5 --per-run --wide
  mpifl report results/*.h5 --csv > table.csv      # every column, a column per key
  mpifl report results/*.h5 --plot figures/ --target 0.9
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `report`."""
    p = sub.add_parser("report", help="tables and figures from result files", epilog=EXAMPLES)
    p.add_argument("runs", nargs="+", help="result files (.h5)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true", help="CSV instead of a text table")
    fmt.add_argument("--markdown", action="store_true", help="Markdown tables")
    p.add_argument("--plot", metavar="DIR", help="write PNG figures into DIR")
    p.add_argument("--target", type=float, default=0.9, help="accuracy for time-to-target")
    p.add_argument("--per-run", action="store_true",
                   help="one row per file instead of per setting (its seeds)")  # fmt: skip
    p.add_argument("--wide", action="store_true",
                   help="every column in text and Markdown (CSV has all)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Print the summary and class tables (runs named by the config keys that differ
    between them, seeds of one setting grouped: mean and sd); write figures with --plot."""
    import pandas as pd  # (imported here: not needed for `mpifl --help`)

    from mpifl.report.labels import differing_keys, file_labels, legend, run_labels, run_seed
    from mpifl.report.summary import (
        STATUSES,
        by_device_class,
        by_setting,
        compact,
        render,
        summarize,
    )
    from mpifl.results.reader import read_run

    if not 0 < args.target <= 1:
        raise InputError(f"report error: --target {args.target}: must be an accuracy in (0, 1]")
    runs = []
    for path in args.runs:
        if not Path(path).is_file():
            what = "is a directory" if Path(path).is_dir() else "does not exist"
            raise InputError(f"report error: {path} {what}")
        try:
            runs.append(read_run(path))
        except (OSError, KeyError) as exc:
            raise InputError(f"report error: {path}: not an mpifl result file ({exc})") from None
    settings = run_labels(runs)
    if not args.per_run:
        for line in _grouping_warnings(args.runs, runs, settings):
            print(f"mpifl: warning: {line}", file=sys.stderr)
    figures = _plots(args, runs, settings)  # first: a reader that stops early (| head) must
    # not cost the figures
    fmt = "csv" if args.csv else "markdown" if args.markdown else "text"
    labels = settings
    notes = []
    if fmt == "text":
        labels, lines = legend(settings)
        notes += ["settings:", *lines] if lines else []
    folder, files = file_labels(args.runs)
    if folder and args.per_run and fmt != "csv":
        notes.append(f"files under {folder}/")
    else:
        files = list(args.runs)
    rows = pd.DataFrame(
        [{"file": f, "setting": label, "seed": run_seed(r)} | summarize(r, args.target)
         for r, label, f in zip(runs, labels, files, strict=True)]
    ).drop(columns="run")  # fmt: skip
    if args.per_run:
        summary = rows
        classes = [by_device_class(r, f) for r, f in zip(runs, files, strict=True)]
    else:
        summary = by_setting(rows.drop(columns="file").rename(columns={"setting": "label"}))
        classes = [by_device_class(r, label) for r, label in zip(runs, labels, strict=True)]
    if fmt == "csv":  # a column per config key that tells settings apart
        first = {label: r.settings for r, label in zip(runs, labels, strict=True)}
        names = summary["setting"] if args.per_run else summary["run"]
        for key in differing_keys(runs):
            summary.insert(len(summary.columns), key, [first[n].get(key) for n in names])
        print(render(summary, fmt), end="")
        _wrote(figures)
        return 0
    table = pd.concat(classes)
    if args.per_run:
        table = table.rename(columns={"run": "file"})
    else:  # client-rounds per class: mean over a setting's seeds
        table = table.groupby(["run", "class"], sort=False).mean().reset_index()
    if not args.wide:  # statuses no client-round had
        table = table.drop(columns=[s for s in STATUSES if not table[s].any()])
    width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
    mean = "" if args.per_run else " (mean over each setting's seeds"
    if fmt == "text":
        print(f"runs{mean and mean + '; _sd: sample sd)'}:")
    print(render(summary if args.wide else compact(summary), fmt, width))
    if fmt == "text":
        print(f"client-rounds per device class and status{mean and mean + ')'}:")
    print(render(table, fmt, width), end="")
    if notes:
        print("\n" + "\n".join(notes))
    _wrote(figures)
    return 0


def _grouping_warnings(paths: list[str], runs: list, settings: list[str]) -> list[str]:
    """What a mean over a setting's runs would hide: a seed counted twice, runs that did
    not complete."""
    from mpifl.report.labels import run_seed

    lines, seen = [], {}
    for path, run, label in zip(paths, runs, settings, strict=True):
        first = seen.setdefault((label, run_seed(run)), path)
        if first != path:
            lines.append(f"{path} repeats seed {run_seed(run)} of {first} (setting {label}): "
                         "the setting's mean counts that seed twice")  # fmt: skip
    unfinished = [f"{p} ({r.attrs['status']})" for p, r in zip(paths, runs, strict=True)
                  if r.attrs["status"] != "complete"]  # fmt: skip
    if unfinished:
        lines.append(f"{len(unfinished)} runs are not complete and are averaged with fewer "
                     f"rounds: {', '.join(unfinished)} (--per-run shows each)")  # fmt: skip
    return lines


def _plots(args: argparse.Namespace, runs: list, labels: list[str]) -> list[Path]:
    """Write the figures (--plot DIR) and return their paths; InputError if the folder
    cannot take them."""
    if not args.plot:
        return []
    from mpifl.report.plots import write_all

    try:
        return write_all(runs, labels, Path(args.plot))
    except OSError as exc:
        raise InputError(f"report error: --plot {args.plot}: cannot write figures there "
                         f"({exc})") from None  # fmt: skip


def _wrote(figures: list[Path]) -> None:
    for path in figures:
        print(f"wrote {path}")
