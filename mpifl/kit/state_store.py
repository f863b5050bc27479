"""Per-client state (e.g. REFT's pruned models) in bounded memory.

An LRU of numpy-array dicts with a byte bound; the least recently used entries spill to
one .npz file per client under this rank's folder and are read back on demand. Stateful
clients always train on their home rank (client mod ranks), so a client's state lives on
one rank only.

A round's writes are held apart (`begin` ... `commit` or `rollback`): a round abandoned
when the job is stopped leaves the store as the last completed round left it, which is
what its checkpoint must hold. Spill files are written atomically, and the folder is
emptied when a run starts, so no state from a killed run is ever read back.
"""

from __future__ import annotations

import contextlib
import shutil
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mpifl.files import copy_file, write_npz

State = dict[str, np.ndarray]


def state_root(output: Path) -> Path:
    """The folder of a run's client-state spill files (one sub-folder per rank)."""
    return output.parent / f".{output.stem}.state"


@dataclass
class StoreStats:
    """Counters since the last `take_stats`."""

    hits: int = 0
    misses: int = 0  # read from a spill file
    bytes_read: int = 0
    bytes_written: int = 0


class ClientStateStore:
    """get/put client state; at most `bound` bytes in RAM, the rest in `folder`."""

    def __init__(self, bound: int, folder: Path) -> None:
        self.bound, self.folder = bound, folder  # created at the first spill
        self._ram: OrderedDict[int, State] = OrderedDict()  # committed, LRU order
        self._clean: set[int] = set()  # in RAM and equal to their spill file
        self._pending: dict[int, State] | None = None  # the open round's puts
        self._bytes = 0  # RAM held by committed and pending states
        self.stats = StoreStats()

    @staticmethod
    def _size(state: State) -> int:
        return sum(a.nbytes for a in state.values())

    def _path(self, client: int) -> Path:
        return self.folder / f"client{client}.npz"

    def get(self, client: int) -> State | None:
        """The client's state, or None if it has none."""
        if self._pending is not None and client in self._pending:
            self.stats.hits += 1
            return self._pending[client]
        if client in self._ram:
            self._ram.move_to_end(client)
            self.stats.hits += 1
            return self._ram[client]
        path = self._path(client)
        if not path.exists():
            return None
        with np.load(path) as f:
            state = {k: f[k] for k in f.files}
        self.stats.misses += 1
        self.stats.bytes_read += self._size(state)
        self._insert(client, state, clean=True)
        return state

    def put(self, client: int, state: State) -> None:
        """Store the client's new state (copies are the caller's business); inside a
        round it takes effect at `commit`."""
        if self._pending is None:
            self._commit_one(client, state)
            return
        if client in self._pending:
            self._bytes -= self._size(self._pending[client])
        self._pending[client] = state
        self._bytes += self._size(state)
        self._evict(keep=0)

    def begin(self) -> None:
        """Start a round: puts are held until `commit` (or dropped by `rollback`)."""
        self._pending = {}

    def commit(self) -> None:
        """The round completed: its puts take effect."""
        pending, self._pending = self._pending or {}, None
        for client, state in pending.items():
            self._bytes -= self._size(state)
            self._commit_one(client, state)

    def rollback(self) -> None:
        """The round was abandoned: forget its puts."""
        pending, self._pending = self._pending or {}, None
        self._bytes -= sum(self._size(s) for s in pending.values())

    def _commit_one(self, client: int, state: State) -> None:
        if client in self._ram:
            self._bytes -= self._size(self._ram.pop(client))
        self._insert(client, state, clean=False)

    def _insert(self, client: int, state: State, clean: bool) -> None:
        self._ram[client] = state
        self._bytes += self._size(state)
        self._clean.discard(client)
        if clean:
            self._clean.add(client)
        self._evict(keep=1)

    def _evict(self, keep: int) -> None:
        while self._bytes > self.bound and len(self._ram) > keep:
            old, old_state = self._ram.popitem(last=False)
            self._bytes -= self._size(old_state)
            if old in self._clean:  # its spill file already holds it
                self._clean.discard(old)
                continue
            self.folder.mkdir(parents=True, exist_ok=True)
            write_npz(self._path(old), old_state, "spilled client state")
            self.stats.bytes_written += self._size(old_state)

    def _spilled(self) -> list[Path]:
        return [p for p in self.folder.glob("client*.npz") if int(p.stem[6:]) not in self._ram]

    def total_bytes(self) -> int:
        """Bytes of every committed state, in RAM or spilled."""
        in_ram = sum(self._size(s) for s in self._ram.values())
        return in_ram + sum(p.stat().st_size for p in self._spilled())

    def export(self, folder: Path) -> int:
        """Write every committed state (in RAM or spilled) to folder/client<k>.npz; returns
        the number of clients."""
        assert self._pending is None, "export between rounds only"
        folder.mkdir(parents=True, exist_ok=True)
        for client, state in self._ram.items():
            write_npz(folder / f"client{client}.npz", state, "the checkpoint's client states")
        spilled = self._spilled()
        for path in spilled:
            copy_file(path, folder / path.name, "the checkpoint's client states")
        return len(self._ram) + len(spilled)

    def import_from(self, folder: Path, keep: Callable[[int], bool]) -> None:
        """Load the states in `folder` of the clients `keep` selects (a resume)."""
        for path in sorted(folder.glob("client*.npz")):
            client = int(path.stem[6:])
            if keep(client):
                with np.load(path) as f:
                    self.put(client, {k: f[k] for k in f.files})
        self.stats = StoreStats()

    @property
    def ram_bytes(self) -> int:
        """Bytes of state held in memory."""
        return self._bytes

    def take_stats(self) -> StoreStats:
        """The counters since the last call, and reset them."""
        stats, self.stats = self.stats, StoreStats()
        return stats

    def close(self) -> None:
        """Remove this rank's spill folder, and the run's state folder once it is empty."""
        shutil.rmtree(self.folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.folder.parent.rmdir()
