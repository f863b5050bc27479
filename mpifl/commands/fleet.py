"""`mpifl fleet generate | show | import`: make, inspect and import fleet files."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from mpifl.fleet.profiles import Fleet
from mpifl.fleet.traces import import_fedscale, load_fleet, save_fleet

EXAMPLES = """examples:
  mpifl fleet generate jobs/quickstart.toml --output fleet.csv   # edit it, then
  mpifl run jobs/quickstart.toml --set fleet.trace='fleet.csv'
  mpifl fleet show fleet.csv
  mpifl fleet import --capacity device_info --behaviour client_behave_trace --output f.h5
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the `fleet` command and its subcommands."""
    fleet = sub.add_parser("fleet", help="make, inspect and import fleet files",
                           epilog=EXAMPLES)  # fmt: skip
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


# unit ladders, (scale, unit), smallest first: each class shows its figures in the largest
# unit in which its median is at least 1
FLOPS = ((1.0, "FLOP/s"), (1e3, "kFLOP/s"), (1e6, "MFLOP/s"), (1e9, "GFLOP/s"),
         (1e12, "TFLOP/s"))  # fmt: skip
BYTES = ((1, "B"), (2**10, "KiB"), (2**20, "MiB"), (2**30, "GiB"), (2**40, "TiB"))
BITS = ((1.0, "bit/s"), (1e3, "kbit/s"), (1e6, "Mbit/s"), (1e9, "Gbit/s"))
WATTS = ((1e-6, "µW"), (1e-3, "mW"), (1.0, "W"), (1e3, "kW"))
JOULES = ((1e-3, "mJ"), (1.0, "J"), (1e3, "kJ"), (1e6, "MJ"))


def number(value: float) -> str:
    """Three significant digits (rounded first), never an exponent below 10^6: 0.126,
    4.04, 28.5, 738, 1440; "<0.001" below."""
    value = float(f"{value:.3g}")
    if value >= 100 or value == 0:
        return f"{value:.0f}"
    return f"{value:.{2 - math.floor(math.log10(abs(value)))}f}" if value >= 0.001 else "<0.001"


def spread(values: np.ndarray, ladder: tuple[tuple[float, str], ...]) -> str:
    """p10/p50/p90 of `values` in the largest unit of the ladder in which their median
    (as shown) is at least 1."""
    quantiles = np.quantile(values, [0.1, 0.5, 0.9])
    fits = [(scale, unit) for scale, unit in ladder if float(number(quantiles[1] / scale)
                                                             .lstrip("<")) >= 1]  # fmt: skip
    scale, unit = fits[-1] if fits else ladder[0]
    return "/".join(number(q / scale) for q in quantiles) + f" {unit}"


def battery(capacity: np.ndarray) -> str:
    """Battery capacities' spread, or "mains" for a class without batteries."""
    return spread(capacity, JOULES) if capacity.any() else "mains"


def describe(fleet: Fleet, name: str) -> str:
    """A table of the device classes: clients, and p10/p50/p90 of training speed, memory,
    bandwidth, training power and battery capacity (or "mains"), each in the unit that
    suits the class; the share of rounds online."""
    p = fleet.profiles
    header = ["class", "clients", "speed", "memory", "uplink", "downlink", "online",
              "training power", "battery"]  # fmt: skip
    rows = []
    for i, cls in enumerate(fleet.class_names):
        mine = p[p["device_class"] == i]
        if len(mine):
            rows.append([cls, str(len(mine)), spread(mine["flops"], FLOPS),
                         spread(mine["memory"], BYTES), spread(mine["uplink"], BITS),
                         spread(mine["downlink"], BITS), f"{mine['availability'].mean():.0%}",
                         spread(mine["train_power"], WATTS),
                         battery(mine["battery"])])  # fmt: skip
    widths = [max(len(r[k]) for r in [header, *rows]) for k in range(len(header))]
    lines = [f"{name}: {len(p)} clients, {len(fleet.class_names)} device classes "
             "(figures: p10/p50/p90 over the class's devices)"]  # fmt: skip
    if fleet.intervals is not None:
        lines.append(f"  availability trace: {len(fleet.intervals.starts)} online intervals")
    for r in [header, *rows]:
        cells = [r[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)
        ]
        lines.append("  " + "  ".join(cells).rstrip())
    return "\n".join(lines)
