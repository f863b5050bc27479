"""`mpifl fleet generate | show | import`: make, inspect and import fleet files."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mpifl.fleet.profiles import Fleet
from mpifl.fleet.traces import import_fedscale, load_fleet, save_fleet


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the `fleet` command and its subcommands."""
    fleet = sub.add_parser("fleet", help="make, inspect and import fleet files")
    verbs = fleet.add_subparsers(dest="fleet_command", required=True)
    gen = verbs.add_parser("generate", help="generate a fleet file from a job's [fleet]")
    gen.add_argument("job", help="job file (TOML); uses fleet.clients, classes, spread, seed")
    gen.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    gen.add_argument("--output", required=True, help="fleet file to write (.csv or .h5)")
    gen.add_argument("--overwrite", action="store_true")
    show = verbs.add_parser("show", help="summarise a fleet file per device class")
    show.add_argument("file")
    imp = verbs.add_parser("import", help="import FedScale's device and behaviour traces")
    imp.add_argument("--capacity", required=True, help="FedScale device capacity pickle")
    imp.add_argument("--behaviour", help="FedScale client behaviour (availability) pickle")
    imp.add_argument(
        "--reference-flops",
        type=float,
        default=0.9e9,
        help="training FLOPs per sample of the model FedScale timed (default 0.9e9)",
    )
    imp.add_argument("--latency", type=float, default=0.05, help="latency, s (default 0.05)")
    imp.add_argument("--output", required=True, help="fleet file to write (.csv or .h5)")
    imp.add_argument("--overwrite", action="store_true")


def run(args: argparse.Namespace) -> int:
    """Execute a `fleet` subcommand; InputError propagates (exit 2)."""
    from mpifl.results.writer import refuse_existing

    if args.fleet_command == "show":
        print(describe(load_fleet(args.file), args.file))
        return 0
    output = Path(args.output)
    if output.suffix not in (".csv", ".h5"):
        from mpifl.errors import InputError

        raise InputError(f"fleet error: --output {output}: must end in .csv or .h5")
    refuse_existing(output, args.overwrite)
    if args.fleet_command == "generate":
        from mpifl.fleet import build_fleet
        from mpifl.jobs import load_job

        cfg = load_job(args.job, args.overrides)
        fleet = build_fleet(cfg.fleet, cfg.fleet.clients, cfg.run.seed)
    else:
        behaviour = Path(args.behaviour) if args.behaviour else None
        fleet = import_fedscale(Path(args.capacity), behaviour, args.reference_flops, args.latency)
    output.parent.mkdir(parents=True, exist_ok=True)
    save_fleet(fleet, output)
    print(describe(fleet, str(output)))
    return 0


def _q(values: np.ndarray, scale: float, unit: str) -> str:
    lo, mid, hi = np.quantile(values, [0.1, 0.5, 0.9]) / scale
    return f"{lo:.3g}/{mid:.3g}/{hi:.3g} {unit}"


def describe(fleet: Fleet, name: str) -> str:
    """Per-class counts and p10/p50/p90 of speed, memory, bandwidth, training power and
    battery capacity (or "mains")."""
    p = fleet.profiles
    lines = [f"{name}: {len(p)} clients, {len(fleet.class_names)} device classes"]
    if fleet.intervals is not None:
        lines.append(f"  availability trace: {len(fleet.intervals.starts)} online intervals")
    lines.append("  (p10/p50/p90)")
    for i, cls in enumerate(fleet.class_names):
        mine = p[p["device_class"] == i]
        if len(mine) == 0:
            continue
        lines.append(
            f"  {cls:>10} {len(mine):>8} clients  flops {_q(mine['flops'], 1e9, 'GFLOP/s')}  "
            f"memory {_q(mine['memory'], 2**20, 'MiB')}  up {_q(mine['uplink'], 1e6, 'Mbit/s')}  "
            f"down {_q(mine['downlink'], 1e6, 'Mbit/s')}  "
            f"availability {mine['availability'].mean():.2f}  "
            f"train {_q(mine['train_power'], 1.0, 'W')}  battery "
            + (_q(mine["battery"], 1e3, "kJ") if mine["battery"].any() else "mains")
        )
    return "\n".join(lines)
