"""Per-client state (e.g. REFT's pruned models) in bounded memory.

An LRU of numpy-array dicts with a byte bound; the least recently used entries spill to
one .npz file per client under this rank's folder and are read back on demand. Stateful
clients always train on their home rank (client mod ranks), so a client's state lives on
one rank only.
"""

from __future__ import annotations

import contextlib
import shutil
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

State = dict[str, np.ndarray]


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
        self.bound, self.folder = bound, folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self._ram: OrderedDict[int, State] = OrderedDict()
        self._bytes = 0
        self.stats = StoreStats()

    @staticmethod
    def _size(state: State) -> int:
        return sum(a.nbytes for a in state.values())

    def _path(self, client: int) -> Path:
        return self.folder / f"client{client}.npz"

    def get(self, client: int) -> State | None:
        """The client's state, or None if it has none."""
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
        self._insert(client, state)
        return state

    def put(self, client: int, state: State) -> None:
        """Store the client's new state (copies are the caller's business)."""
        if client in self._ram:
            self._bytes -= self._size(self._ram.pop(client))
        self._insert(client, state)

    def _insert(self, client: int, state: State) -> None:
        self._ram[client] = state
        self._bytes += self._size(state)
        while self._bytes > self.bound and len(self._ram) > 1:
            old, old_state = self._ram.popitem(last=False)
            self._bytes -= self._size(old_state)
            np.savez(self._path(old), **old_state)
            self.stats.bytes_written += self._size(old_state)

    def export(self, folder: Path) -> int:
        """Write every state this store holds (in RAM or spilled) to folder/client<k>.npz;
        returns the number of clients."""
        folder.mkdir(parents=True, exist_ok=True)
        for client, state in self._ram.items():
            np.savez(folder / f"client{client}.npz", **state)
        spilled = [p for p in self.folder.glob("client*.npz") if int(p.stem[6:]) not in self._ram]
        for path in spilled:
            shutil.copyfile(path, folder / path.name)
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
