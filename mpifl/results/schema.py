"""The HDF5 result schema: table dtypes and status codes (documented in docs/results.md)."""

from __future__ import annotations

from enum import IntEnum

import numpy as np

from mpifl.fleet.profiles import PROFILE_DTYPE

FORMAT_VERSION = 1


class Status(IntEnum):
    """What happened to a sampled client in a round."""

    TRAINED = 0  # trained and aggregated
    UNAVAILABLE = 1  # offline this round
    INFEASIBLE = 2  # training footprint exceeds its memory budget
    LATE = 3  # would finish after the round deadline
    REJECTED = 4  # trained, but its update was not finite (or out of range)
    DROPPED = 5  # went offline before it finished
    SURPLUS = 6  # over-commitment: finished after the first `cohort` clients
    OOM = 7  # measured memory growth exceeded its budget (memory = measured | both)


STATUS_NAMES = {s.name.lower(): int(s) for s in Status}

PARTICIPATION_DTYPE = np.dtype(
    [
        ("round", "i4"),
        ("client", "i8"),
        ("rank", "i2"),  # -1 when not trained
        ("status", "u1"),
        ("device_class", "u1"),
        ("samples", "i4"),
        ("flops", "f8"),  # training FLOPs of this round's work
        ("footprint", "i8"),  # training memory footprint, bytes
        ("memory", "f8"),  # the device's memory budget, bytes
        ("compute_time", "f8"),  # virtual seconds
        ("comm_time", "f8"),  # virtual seconds, down + up + latency
        ("bytes_down", "i8"),
        ("bytes_up", "i8"),
        ("wall_time", "f8"),  # host seconds spent on the client, throttling included
        ("measured_memory", "i8"),  # peak RSS growth while training, bytes (-1 = not measured)
        ("loss", "f4"),  # mean local training loss (NaN if not trained)
        ("accuracy", "f4"),  # trained model on the client's own test split (NaN if none)
        ("width", "f4"),  # width ratio of the client's model (1 = full)
        ("prune", "f4"),  # pruning ratio (0 = none)
        ("family", "i2"),  # model family index (0 = the only one)
    ]
)

ROUNDS_DTYPE = np.dtype(
    [
        ("round", "i4"),
        ("virtual_time", "f8"),  # virtual clock at the round's end, s
        ("duration", "f8"),  # virtual length of the round, s
        ("wall_time", "f8"),  # wall seconds of the round on rank 0
        ("sampled", "i4"),
        ("trained", "i4"),
        ("unavailable", "i4"),
        ("infeasible", "i4"),
        ("late", "i4"),
        ("rejected", "i4"),
        ("dropped", "i4"),
        ("surplus", "i4"),
        ("oom", "i4"),
        ("bytes_down", "i8"),
        ("bytes_up", "i8"),
        ("train_loss", "f8"),  # sample-weighted mean over trained clients
        ("test_loss", "f8"),  # global/server model on the global test set (NaN: none)
        ("test_accuracy", "f8"),
        ("client_accuracy", "f8"),  # own test splits, each client's model: mean over clients
        ("client_accuracy_pooled", "f8"),  # the same, all clients' test samples pooled
    ]
)

RANKS_DTYPE = np.dtype(
    [
        ("round", "i4"),
        ("rank", "i2"),
        ("clients", "i4"),  # clients trained on this rank
        ("train_time", "f8"),  # wall s in client training
        ("comm_time", "f8"),  # wall s in collectives
        ("io_time", "f8"),  # wall s writing results
        ("wall_time", "f8"),  # wall s of the whole round
        ("rss", "i8"),  # resident set at the round's end, bytes
        ("peak_rss", "i8"),  # peak resident set so far, bytes
        ("state_hits", "i4"),  # client-state reads served from memory
        ("state_misses", "i4"),  # client-state reads from spill files
        ("state_bytes_read", "i8"),  # from spill files
        ("state_bytes_written", "i8"),  # to spill files
        ("state_ram_bytes", "i8"),  # client state held in memory at the round's end
    ]
)

EVAL_DTYPE = np.dtype(
    [
        ("round", "i4"),
        ("group", "S32"),  # "global", or a tier / family name
        ("loss", "f8"),
        ("accuracy", "f8"),
        ("samples", "i8"),
    ]
)

FLEET_DTYPE = np.dtype(PROFILE_DTYPE.descr + [("n_train", "i4"), ("n_test", "i4")])
