"""Every rank holds the same server state after each server step (SPMD): a cheap
fingerprint of it, compared across ranks, catches a method whose server step reads
something that differs per rank (Python's `random`, a global generator, the clock, data
that differ per rank) before the ranks train on different models without a word."""

from __future__ import annotations

import hashlib

import numpy as np

from mpifl.comm import Comm
from mpifl.errors import MethodError
from mpifl.kit.method import Method


def fingerprint(state: dict[str, np.ndarray]) -> str:
    """A digest of a server state's arrays (names, shapes, dtypes and bytes)."""
    digest = hashlib.blake2b(digest_size=16)
    for name in sorted(state):
        value = np.ascontiguousarray(state[name])
        digest.update(f"{name}:{value.dtype.str}:{value.shape}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def check_server_state(comm: Comm, method: Method, name: str, round_: int) -> None:
    """MethodError on every rank if the ranks' server states differ after round `round_`
    (numbered from 0); nothing on one rank."""
    if comm.size == 1:
        return
    mine = fingerprint(method.state_dict())
    if comm.any_flag(comm.bcast_object(mine) != mine):
        raise MethodError(
            f"the ranks diverged in round {round_ + 1}: method {name!r} holds a different "
            "server state on different ranks. A server step must compute the same state "
            "on every rank from the reduced sums and its own seeded streams "
            "(mpifl.kit.torch_generator and friends); Python's random, numpy's or torch's "
            "global generators, the clock or data that differ per rank break that"
        )
