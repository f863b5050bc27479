"""The HDF5 result schema: table dtypes, status codes, and every column's unit and
description (stored with each table as the attributes `units` and `descriptions`, in
column order; documented at length in docs/results.md)."""

from __future__ import annotations

from enum import IntEnum

import numpy as np

# 2: enum device_class, units, descriptions; 3: rounds from 1; 4: participation.family
# renamed variant, and the server table; 5: participation's dispatch and arrival times,
# the round that applies the update, its staleness and weight (asynchronous aggregation);
# 6: the client_metrics table (a method's declared per-client figures, long format; its
# units and descriptions in the dataset's attributes), read as empty from older files;
# 7: the partial status (round.partial_work), participation.steps and rounds.partial;
# 8: energy and batteries: the low_battery status, participation's energies and charge,
# rounds.low_battery and rounds.energy, the energy table, the fleet's energy columns
FORMAT_VERSION = 8


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
    PARTIAL = 8  # round.partial_work: trained the local steps that fit the deadline, aggregated
    LOW_BATTERY = 9  # its battery was below energy.threshold (or not yet back to energy.resume)


CONTRIBUTING = (Status.TRAINED, Status.PARTIAL)  # statuses whose update the server aggregates


def contributes(status: np.ndarray) -> np.ndarray:
    """Whether each status is one whose update the server aggregates (trained, partial)."""
    return np.isin(status, CONTRIBUTING)


STATUS_NAMES = {s.name.lower(): int(s) for s in Status}

WORK_ENERGY = ("energy_train", "energy_down", "energy_up")  # participation's J of work

PARTICIPATION_DTYPE = np.dtype(
    [
        ("round", "i4"),
        ("client", "i8"),
        ("rank", "i2"),  # -1 when not trained
        ("status", "u1"),
        ("device_class", "u1"),
        ("samples", "i4"),
        ("steps", "i4"),  # local SGD steps of the planned work (fewer than all: partial)
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
        ("variant", "i2"),  # which of the method's model variants (0 = the only one)
        ("group", "i4"),  # batched group the client trained in (-1: alone or not trained)
        ("dispatch_time", "f8"),  # virtual time the client received the model, s
        ("arrival_time", "f8"),  # virtual time its update arrives, s (NaN: never started)
        ("applied", "i4"),  # round whose server step aggregates the update (0: none)
        ("staleness", "i4"),  # applied - round: server steps it lagged (-1: not applied)
        ("update_weight", "f4"),  # staleness weight of the update (1 when not stale)
        ("energy_train", "f8"),  # J spent training
        ("energy_down", "f8"),  # J spent receiving the model
        ("energy_up", "f8"),  # J spent sending the update
        ("charge", "f8"),  # J in its battery after the round (NaN: mains powered)
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
        ("partial", "i4"),
        ("low_battery", "i4"),
        ("bytes_down", "i8"),
        ("bytes_up", "i8"),
        ("energy", "f8"),  # J the sampled clients spent on the round's work
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

SERVER_DTYPE = np.dtype(
    [
        ("round", "i4"),
        ("name", "S32"),  # a figure the method's server step reported, e.g. distill_loss
        ("value", "f8"),
    ]
)

ENERGY_DTYPE = np.dtype(
    [
        ("round", "i4"),
        ("device_class", "u1"),
        ("energy_train", "f8"),  # J, the class's sampled clients
        ("energy_radio", "f8"),  # J, down + up
        ("energy_idle", "f8"),  # J, every device of the class, the rest of the round
        ("harvested", "f8"),  # J, into batteries (what a full battery cannot take is lost)
        ("charge", "f8"),  # mean state of charge of its battery-powered devices, fraction
        ("low_battery", "i4"),  # its devices declining for a low battery at the round's end
        ("flat", "i4"),  # its devices with an empty battery at the round's end
    ]
)

CLIENT_METRICS_DTYPE = np.dtype(
    [
        ("round", "i4"),
        ("client", "i4"),
        ("name", "S32"),  # a per-client figure the method declared (Method.client_metrics)
        ("value", "f8"),
    ]
)
CLIENT_METRIC_NAME_BYTES = CLIENT_METRICS_DTYPE["name"].itemsize

# A client's device profile (fleet files, the fleet table; mpifl.fleet.profiles).
PROFILE_DTYPE = np.dtype(
    [
        ("device_class", "u1"),
        ("flops", "f4"),  # training speed, FLOP/s
        ("memory", "f8"),  # training memory budget, bytes
        ("uplink", "f4"),  # bit/s
        ("downlink", "f4"),  # bit/s
        ("latency", "f4"),  # s, one way
        ("availability", "f4"),  # probability of being online in a round
        ("trace_period", "f8"),  # s after which the client's interval trace repeats (0 = never)
        ("train_power", "f4"),  # W while training
        ("idle_power", "f4"),  # W while neither training nor transferring
        ("tx_power", "f4"),  # W while sending
        ("rx_power", "f4"),  # W while receiving
        ("battery", "f4"),  # capacity, J (0 = mains powered)
        ("solar", "f4"),  # peak harvesting power, W (0 = none)
        ("start_charge", "f4"),  # state of charge at virtual time 0, fraction of capacity
    ]
)

FLEET_DTYPE = np.dtype(PROFILE_DTYPE.descr + [("n_train", "i4"), ("n_test", "i4")])

# Every column's unit and description: "table.column | unit | description", one per line.
_COLUMN_TABLE = """
participation.round | round | round number, from 1 (the first round)
participation.client | id | client id
participation.rank | rank | rank that trained the client; -1 if not trained
participation.status | enum | what happened to the sampled client (enum: trained, ...)
participation.device_class | enum | device class (enum of fleet.attrs['device_classes'])
participation.samples | samples | training samples of the client
participation.steps | steps | local SGD steps of the planned work (partial: those that fit)
participation.flops | FLOP | training FLOPs of this round's local work
participation.footprint | bytes | training memory footprint
participation.memory | bytes | the device's memory budget
participation.compute_time | s (virtual) | compute time of the planned work; 0 if never started
participation.comm_time | s (virtual) | latency + download + upload time; 0 if never started
participation.bytes_down | bytes | sent to the client; 0 if unavailable or infeasible
participation.bytes_up | bytes | received from the client; 0 unless trained or rejected
participation.wall_time | s | host wall time spent on the client; 0 if not trained
participation.measured_memory | bytes | peak RSS growth while training; -1 if not measured
participation.loss | nats | mean local training loss; NaN if not trained
participation.accuracy | fraction | trained local model on the client's own test split
participation.width | ratio | width ratio of the client's model (1 = full)
participation.prune | ratio | pruning ratio of the client's model (0 = none)
participation.variant | index | the method's model variant the client trained (see docs/methods.md)
participation.group | index | batched group the client trained in; -1 if trained alone or not at all
participation.dispatch_time | s (virtual) | when the client got the model (synchronous: round start)
participation.arrival_time | s (virtual) | when its update reaches the server; NaN if never started
participation.applied | round | round whose server step aggregates the update; 0 if none does
participation.staleness | rounds | applied - round: server steps its model lagged; -1 if not applied
participation.update_weight | ratio | staleness weight of the update (1 if fresh; 0 if not applied)
participation.energy_train | J | energy spent training: train_power x compute_time
participation.energy_down | J | energy spent receiving: rx_power x 8 bytes_down / downlink
participation.energy_up | J | energy spent sending: tx_power x 8 bytes_up / uplink
participation.charge | J | charge left in its battery after the round; NaN if mains powered
rounds.round | round | round number, from 1 (the first round)
rounds.virtual_time | s (virtual) | virtual clock at the end of the round
rounds.duration | s (virtual) | virtual length of the round
rounds.wall_time | s | wall time of the round on rank 0
rounds.sampled | clients | clients sampled
rounds.trained | clients | count of sampled clients with this status
rounds.unavailable | clients | count of sampled clients with this status
rounds.infeasible | clients | count of sampled clients with this status
rounds.late | clients | count of sampled clients with this status
rounds.rejected | clients | count of sampled clients with this status
rounds.dropped | clients | count of sampled clients with this status
rounds.surplus | clients | count of sampled clients with this status
rounds.oom | clients | count of sampled clients with this status
rounds.partial | clients | count of sampled clients with this status
rounds.low_battery | clients | count of sampled clients with this status
rounds.bytes_down | bytes | sum over the round's participation rows
rounds.bytes_up | bytes | sum over the round's participation rows
rounds.energy | J | training + radio energy, sum over the round's participation rows
rounds.train_loss | nats | sample-weighted mean training loss of trained clients
rounds.test_loss | nats | global (server) model on the global test set
rounds.test_accuracy | fraction | global (server) model on the global test set
rounds.client_accuracy | fraction | each client's model on its own test split, mean over clients
rounds.client_accuracy_pooled | fraction | each client's model on its own test split, samples pooled
ranks.round | round | round number, from 1 (the first round)
ranks.rank | rank | MPI rank
ranks.clients | clients | clients trained on this rank
ranks.train_time | s | wall time in local training (waits for other ranks are comm_time)
ranks.comm_time | s | wall time inside collectives
ranks.io_time | s | wall time writing the result file
ranks.wall_time | s | wall time of the round on this rank
ranks.rss | bytes | resident set size at the end of the round
ranks.peak_rss | bytes | peak resident set size so far
ranks.state_hits | reads | client-state reads served from memory
ranks.state_misses | reads | client-state reads from spill files
ranks.state_bytes_read | bytes | client state read from spill files
ranks.state_bytes_written | bytes | client state spilled to files
ranks.state_ram_bytes | bytes | client state held in memory at the end of the round
eval.round | round | round number, from 1 (the first round)
eval.group | text | what was scored on what (global, clients/mean, width=R, ...)
eval.loss | nats | mean cross-entropy
eval.accuracy | fraction | accuracy
eval.samples | samples | test samples; for clients/mean, clients averaged
server.round | round | round number, from 1 (the first round)
server.name | text | what the method's server step measured (per method: docs/methods.md)
server.value | method-defined | the figure (units in docs/methods.md)
energy.round | round | round number, from 1 (the first round)
energy.device_class | enum | device class (enum of fleet.attrs['device_classes'])
energy.energy_train | J | the class's sampled clients: energy spent training
energy.energy_radio | J | the class's sampled clients: energy spent receiving and sending
energy.energy_idle | J | every device of the class: idle power over the rest of the round
energy.harvested | J | harvested into the class's batteries (none beyond a full one)
energy.charge | fraction | mean state of charge of the class's battery-powered devices (NaN: none)
energy.low_battery | devices | the class's devices below the threshold at the round's end
energy.flat | devices | the class's devices with an empty battery at the round's end
client_metrics.round | round | round number, from 1 (the first round)
client_metrics.client | id | client id (a client that trained in this round)
client_metrics.name | text | a per-client figure the method declares (its client_metrics)
client_metrics.value | method-defined | the figure (unit: the attribute metric_units)
fleet.device_class | enum | device class (enum of the attribute device_classes)
fleet.flops | FLOP/s | training speed
fleet.memory | bytes | training memory budget
fleet.uplink | bit/s | upload bandwidth
fleet.downlink | bit/s | download bandwidth
fleet.latency | s | one-way latency
fleet.availability | probability | probability of being online in a round
fleet.trace_period | s | period of the availability trace (0 = none)
fleet.train_power | W | power while training
fleet.idle_power | W | power while neither training nor transferring
fleet.tx_power | W | power while sending
fleet.rx_power | W | power while receiving
fleet.battery | J | battery capacity (0 = mains powered)
fleet.solar | W | peak harvesting power (a half sine over the day; 0 = none)
fleet.start_charge | fraction | state of charge at virtual time 0
fleet.n_train | samples | training samples
fleet.n_test | samples | samples of the client's own test split
"""


def _columns(text: str) -> dict[str, dict[str, tuple[str, str]]]:
    out: dict[str, dict[str, tuple[str, str]]] = {}
    for line in text.strip().splitlines():
        name, unit, description = (part.strip() for part in line.split("|"))
        table, column = name.split(".")
        out.setdefault(table, {})[column] = (unit, description)
    return out


COLUMNS = _columns(_COLUMN_TABLE)


def client_metrics_problem(declared: object) -> str | None:
    """What is wrong with a method's `client_metrics` declaration (name -> (unit,
    description)), or None: each name must be ASCII text of 1 to 32 bytes (the table's
    `name` column) that is not a participation column (it becomes one in `read_run`)."""
    if not isinstance(declared, dict):
        return "its client_metrics must be a dict: name -> (unit, description)"
    for name, about in declared.items():
        if not (isinstance(name, str) and name.isascii() and name.isprintable()):
            return f"its client_metrics name {name!r} must be printable ASCII text"
        if not 1 <= len(name) <= CLIENT_METRIC_NAME_BYTES:
            return f"its client_metrics name {name!r} must have 1 to 32 characters"
        if name in PARTICIPATION_DTYPE.names:
            return f"its client_metrics name {name!r} is a participation column"
        if not (
            isinstance(about, tuple) and len(about) == 2 and all(isinstance(a, str) for a in about)
        ):
            return f"its client_metrics[{name!r}] must be a (unit, description) pair of str"
    return None
