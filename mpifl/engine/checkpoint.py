"""Checkpoints: what a run needs to continue bitwise-identically, written atomically.

Layout beside the result file: `RUN.h5.ckpt/round_000010/` holds `meta.npz` (next round,
virtual clock, rank count), `method.npz` (the method's server-side state) and
`clients/client<k>.npz` (every rank's client-state store); `RUN.h5.ckpt/latest` names the
newest complete checkpoint and is replaced atomically only after every rank has written
its part. Random streams are counter-based (seed, round, client): there are no stream
positions to save. Client state is stored per client, so a run can resume on another
rank count.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mpifl.comm import Comm
from mpifl.engine.state_store import ClientStateStore


@dataclass
class Checkpoint:
    """A loaded checkpoint."""

    folder: Path
    next_round: int
    virtual_time: float
    method_state: dict[str, np.ndarray]


def folder_of(output: Path) -> Path:
    """The checkpoint folder of a result file."""
    return output.with_name(output.name + ".ckpt")


def save(
    comm: Comm,
    output: Path,
    next_round: int,
    virtual_time: float,
    method_state: dict[str, np.ndarray],
    store: ClientStateStore | None,
) -> Path:
    """Write a checkpoint (collective); returns its folder."""
    root = folder_of(output)
    target = root / f"round_{next_round:06d}"
    if comm.rank == 0:
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
    comm.barrier()
    if store is not None:
        store.export(target / "clients")
    comm.barrier()
    if comm.rank == 0:
        meta = {"next_round": next_round, "virtual_time": virtual_time, "n_ranks": comm.size}
        np.savez(target / "meta.npz", **{k: np.array(v) for k, v in meta.items()})
        np.savez(target / "method.npz", **method_state)
        tmp = root / "latest.tmp"
        tmp.write_text(target.name)
        os.replace(tmp, root / "latest")
        for old in root.glob("round_*"):
            if old != target:
                shutil.rmtree(old, ignore_errors=True)
    comm.barrier()
    return target


def load(output: Path) -> Checkpoint | None:
    """The newest complete checkpoint of a result file, or None."""
    root = folder_of(output)
    latest = root / "latest"
    if not latest.is_file():
        return None
    folder = root / latest.read_text().strip()
    with np.load(folder / "meta.npz") as meta, np.load(folder / "method.npz") as method:
        return Checkpoint(
            folder,
            int(meta["next_round"]),
            float(meta["virtual_time"]),
            {k: method[k] for k in method.files},
        )
