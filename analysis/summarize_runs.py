"""Print a one-line summary per result file, and participation by device class.

python analysis/summarize_runs.py results/*.h5
"""

from __future__ import annotations

import argparse

import h5py
import numpy as np

from mpifl.results.schema import Status


def summarize(path: str) -> str:
    """A short text summary of one result file."""
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        rounds, part = f["rounds"][:], f["participation"][:]
        classes = list(f["fleet"].attrs["device_classes"])
        head = (
            f"{path}: {f.attrs['name']} ({f.attrs['algorithm']}), {f.attrs['n_ranks']} ranks, "
            f"status {f.attrs['status']}, {len(rounds)} rounds"
        )
    acc = rounds["test_accuracy"]
    lines = [head]
    if np.any(~np.isnan(acc)):
        lines.append(f"  final accuracy {acc[~np.isnan(acc)][-1]:.4f}, best {np.nanmax(acc):.4f}")
    mb_down, mb_up = rounds["bytes_down"].sum() / 1e6, rounds["bytes_up"].sum() / 1e6
    lines.append(f"  {mb_down:.2f} MB down, {mb_up:.2f} MB up")
    for i, name in enumerate(classes):
        mine = part[part["device_class"] == i]
        counts = ", ".join(f"{s.name.lower()} {np.sum(mine['status'] == s)}" for s in Status)
        lines.append(f"  {name:>8}: {counts}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+")
    for path in p.parse_args().files:
        print(summarize(path))


if __name__ == "__main__":
    main()
