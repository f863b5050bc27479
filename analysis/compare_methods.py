"""A method-comparison table from result files (one row per file), as Markdown.

    python analysis/compare_methods.py results/fedavg_hetero_digits.h5 results/submodel_*.h5 ...

Columns: trained and infeasible client-rounds, final and best accuracy of the headline
model, mean bytes down and up per round, and mean training FLOPs per trained client.
"""

from __future__ import annotations

import argparse
import tomllib

import h5py
import numpy as np

from mpifl.results.schema import Status


def row(path: str) -> list[str]:
    """One table row for a result file."""
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        rounds, part = f["rounds"][:], f["participation"][:]
        cfg = tomllib.loads(f.attrs["config"])
    alg = cfg["algorithm"]
    detail = alg.get("selection") or alg.get("mode")
    label = alg["name"] + (f" ({detail})" if detail else "")
    trained = part[part["status"] == Status.TRAINED]
    acc = rounds["test_accuracy"]
    return [
        label,
        str(len(trained)),
        str(int(np.sum(part["status"] == Status.INFEASIBLE))),
        f"{acc[~np.isnan(acc)][-1]:.4f}",
        f"{np.nanmax(acc):.4f}",
        f"{rounds['bytes_down'].mean() / 1e3:.1f}",
        f"{rounds['bytes_up'].mean() / 1e3:.1f}",
        f"{trained['flops'].mean() / 1e6:.2f}",
    ]


HEADER = [
    "method",
    "trained",
    "infeasible",
    "final acc",
    "best acc",
    "kB down/round",
    "kB up/round",
    "MFLOP/client",
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+")
    rows = [HEADER, ["---"] * len(HEADER)] + [row(path) for path in p.parse_args().files]
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
