"""Checkpoints: what a run needs to continue bitwise-identically, written atomically.

Layout beside the result file: `RUN.h5.ckpt/round_000010-<id>/` holds `meta.npz` (next
round, virtual clock, rank count, run id), `method.npz` (the method's server-side state)
and `clients/client<k>.npz` (every rank's client-state store); `RUN.h5.ckpt/latest` names
the newest complete checkpoint and is replaced atomically only after every rank has
written its part. Each checkpoint goes into a folder of its own (the id is fresh every
time), so the one `latest` names is never touched until a newer one is complete: a kill
or a full disk during a checkpoint leaves the previous one intact.

A checkpoint belongs to one run: the run id in its meta must equal the result file's
`run_id` attribute, so checkpoints left over from an overwritten run are never resumed.
A completed run's checkpoints are removed. Random streams are counter-based (seed, round,
client): there are no stream positions to save. Client state is stored per client, so a
run can resume on another rank count.
"""

from __future__ import annotations

import shutil
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mpifl.comm import Comm
from mpifl.errors import InputError
from mpifl.files import require_space, write_npz, write_text

if TYPE_CHECKING:
    from mpifl.kit.state_store import ClientStateStore


@dataclass
class Checkpoint:
    """A loaded checkpoint."""

    folder: Path
    next_round: int
    virtual_time: float
    method_state: dict[str, np.ndarray]
    run_id: str


def folder_of(output: Path) -> Path:
    """The checkpoint folder of a result file."""
    return output.with_name(output.name + ".ckpt")


def save(
    comm: Comm,
    output: Path,
    run_id: str,
    next_round: int,
    virtual_time: float,
    method_state: dict[str, np.ndarray],
    store: ClientStateStore | None,
) -> Path:
    """Write a checkpoint (collective); returns its folder."""
    root = folder_of(output)
    name = f"round_{next_round:06d}-{uuid.uuid4().hex[:8]}" if comm.rank == 0 else None
    target = root / comm.bcast_object(name)
    if comm.rank == 0:
        target.mkdir(parents=True)
    comm.barrier()
    if store is not None:
        require_space(target, store.total_bytes(), "the checkpoint's client states")
        store.export(target / "clients")
    comm.barrier()
    if comm.rank == 0:
        require_space(
            target, sum(a.nbytes for a in method_state.values()), "the checkpoint's method state"
        )
        meta = {
            "next_round": next_round,
            "virtual_time": virtual_time,
            "n_ranks": comm.size,
            "run_id": run_id,
        }
        write_npz(target / "method.npz", method_state, "the checkpoint")
        write_npz(target / "meta.npz", {k: np.array(v) for k, v in meta.items()}, "the checkpoint")
        write_text(root / "latest", target.name, "the checkpoint")
        for old in root.glob("round_*"):  # older checkpoints, and any a kill left partial
            if old != target:
                shutil.rmtree(old, ignore_errors=True)
    comm.barrier()
    return target


def load(output: Path, run_id: str) -> Checkpoint | None:
    """The newest complete checkpoint of the run `run_id` of a result file, or None if it
    has none (never written, or left over from another run of the same path)."""
    latest = folder_of(output) / "latest"
    if not latest.is_file():
        return None
    ckpt = read(folder_of(output) / latest.read_text().strip())
    return ckpt if ckpt.run_id == run_id else None


def read(folder: Path) -> Checkpoint:
    """The checkpoint in `folder`; InputError if it cannot be read."""
    try:
        with np.load(folder / "meta.npz") as meta, np.load(folder / "method.npz") as method:
            return Checkpoint(
                folder,
                int(meta["next_round"]),
                float(meta["virtual_time"]),
                {k: method[k] for k in method.files},
                str(meta["run_id"]) if "run_id" in meta.files else "",
            )
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise InputError(f"resume error: checkpoint {folder} is unreadable ({exc})") from None


def remove(output: Path) -> None:
    """Delete every checkpoint of a result file."""
    shutil.rmtree(folder_of(output), ignore_errors=True)
