"""Counter-based random streams keyed by (seed, purpose, round, client).

No global RNG state: every rank derives the same numbers for the same key, so a
client's work is identical on whichever rank runs it, for any rank count.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from enum import IntEnum
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


class Purpose(IntEnum):
    """Distinct stream families, so no two uses of randomness share numbers."""

    PARTITION = 1
    FLEET = 2
    SAMPLE = 3
    AVAILABILITY = 4
    TRAIN = 5
    INIT = 6
    SYNTHETIC = 7
    PHASE = 8
    DISTILL = 9
    FINETUNE = 10
    SELECT = 11


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, vectorised (uint64 arithmetic wraps)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
        return x ^ (x >> np.uint64(31))


def hash64(
    seed: int, purpose: Purpose, round_: int | np.ndarray, ids: np.ndarray | int
) -> np.ndarray:
    """A 64-bit hash per id of the key (seed, purpose, round, id); round_ may be an array
    (one per id) and is >= -1."""
    ids = np.asarray(ids, dtype=np.uint64)
    rounds = (np.asarray(round_, dtype=np.int64) + 1).astype(np.uint64)
    with np.errstate(over="ignore"):
        h = _mix(np.uint64(seed) * _GOLDEN + np.uint64(int(purpose)))
        h = _mix(h ^ (rounds * _GOLDEN))
        return _mix(h ^ (ids * _GOLDEN + _GOLDEN))


def uniform(seed: int, purpose: Purpose, round_: int | np.ndarray, ids: np.ndarray) -> np.ndarray:
    """One U[0, 1) draw per id, vectorised and counter-based."""
    return (hash64(seed, purpose, round_, ids) >> np.uint64(11)).astype(np.float64) / 2.0**53


def generator(seed: int, purpose: Purpose, round_: int = -1, key: int = 0) -> np.random.Generator:
    """A numpy Generator for the key (seed, purpose, round, key)."""
    return np.random.Generator(np.random.Philox(key=int(hash64(seed, purpose, round_, key))))


def torch_generator(seed: int, purpose: Purpose, round_: int, key: int) -> torch.Generator:
    """A torch CPU Generator for the key (seed, purpose, round, key)."""
    import torch  # (here: planning and the CLI need no torch)

    g = torch.Generator()
    g.manual_seed(int(hash64(seed, purpose, round_, key) >> np.uint64(1)))
    return g


def torch_init_seed(seed: int, key: int = 0) -> int:
    """The seed for initialising model `key` (use under torch.random.fork_rng)."""
    return int(hash64(seed, Purpose.INIT, -1, key) >> np.uint64(1))


@contextlib.contextmanager
def seeded_init(seed: int, key: int = 0) -> Iterator[None]:
    """Within the block, torch's global generator is seeded for initialising model `key`
    (the same on every rank); torch's random state outside the block is untouched."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(torch_init_seed(seed, key))
        yield


def random_subset(size: int, n: int, seed: int, purpose: Purpose, key: int) -> torch.Tensor:
    """The positions of `n` of `size` items (all of them if n >= size), drawn once from
    the stream (seed, purpose, -1, key) in the order of its permutation."""
    import torch

    return torch.randperm(size, generator=torch_generator(seed, purpose, -1, key))[:n]
