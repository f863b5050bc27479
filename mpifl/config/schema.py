"""The config schema: every section and key a job file may hold, with defaults."""

from __future__ import annotations

import math
from importlib.util import find_spec

from mpifl.config.fields import (
    MAX_LIST,
    Field,
    NamedTables,
    choice,
    integer,
    number,
    positive_list,
)
from mpifl.fleet.devices import CATALOGUE, ENERGY_DEFAULTS
from mpifl.fleet.profiles import MAX_CLASSES
from mpifl.plugins import is_plugin
from mpifl.results.metrics import is_metric_name

Section = dict[str, "Field | NamedTables | Section"]

MAX_UNITS = 2**16  # widest layer a job may ask for (the model's size is checked too)
MIN_RLIMIT_DATA = 2**30  # below this the interpreter and torch cannot run at all

BUILT_IN = ("digits", "mnist5k", "synthetic", "w1")
FROM_PATH = ("npz", "mnist", "cifar10", "cifar100", "femnist", "tff")
PLUGIN = ("python",)  # data.factory names a user's function
DATA_SOURCES = BUILT_IN + FROM_PATH + PLUGIN

DEVICE_FIELDS = NamedTables(
    fields={
        "weight": number(None, 0.0, 1e6, doc="mixture weight (normalised over classes)"),
        "flops": number(None, 1e3, 1e18, doc="median training speed, FLOP/s"),
        "memory": number(None, 1.0, 2.0**50, doc="median training memory budget, bytes"),
        "uplink": number(None, 1.0, 1e12, doc="median uplink, bit/s"),
        "downlink": number(None, 1.0, 1e12, doc="median downlink, bit/s"),
        "latency": number(None, 0.0, 1e6, doc="median one-way latency, s"),
        "availability": number(None, 0.0, 1.0, doc="probability of being online in a round"),
        "bf16": number(
            1.0,
            0.0,
            100.0,
            low_open=True,
            doc="training speed in bf16 relative to fp32 (train.precision = bf16): 1 = no "
            "gain (no bf16 arithmetic), 2 = native bf16 at twice the fp32 rate",
        ),
        **{
            key: number(ENERGY_DEFAULTS[key], 0.0, 1e6, doc=f"median power {what}, W")
            for key, what in (
                ("train_power", "while training"),
                ("idle_power", "while neither training nor transferring"),
                ("tx_power", "while sending"),
                ("rx_power", "while receiving"),
            )
        },
        "battery": number(
            ENERGY_DEFAULTS["battery"], 0.0, 1e12, doc="median battery capacity, J; 0 = mains"
        ),
        "solar": number(
            ENERGY_DEFAULTS["solar"],
            0.0,
            1e6,
            doc="median peak harvesting power, W (a half sine over the day); 0 = none",
        ),  # fmt: skip
        "charge_min": number(
            ENERGY_DEFAULTS["charge_min"], 0.0, 1.0, doc="starting charge: uniform from this"
        ),
        "charge_max": number(
            ENERGY_DEFAULTS["charge_max"], 0.0, 1.0, doc="... to this fraction of capacity"
        ),
    },
    presets=CATALOGUE,
    max_entries=MAX_CLASSES,
)
MAX_NAME = 128


def log_path(default: str) -> Field:
    """Where a callback writes: a path ('' = `default`; {name} is run.name)."""
    return Field(
        "str",
        "",
        "must be a path without control characters ('' = the default)",
        lambda v: v.isprintable() and len(v) <= 4096,
        doc=f"'' = {default}; {{name}} is replaced by run.name",
    )


SCHEMA: Section = {
    "run": {
        "name": Field(
            "str",
            "run",
            f"must be a non-empty string of at most {MAX_NAME} printable characters",
            lambda v: bool(v.strip()) and len(v) <= MAX_NAME and v.isprintable(),
        ),
        "seed": integer(0, 0, "root of every random stream"),
        "rounds": integer(10, 1, maximum=10**7),
        "output": Field(
            "str",
            "results/{name}.h5",
            "must be a path ending in .h5, without control characters",
            lambda v: v.endswith(".h5") and v.isprintable() and len(v) <= 4096,
        ),
        "threads": integer(
            0, 0, "torch threads per rank; 0 = $SLURM_CPUS_PER_TASK or 1", maximum=1024
        ),
        "eval_every": integer(1, 1, "evaluate the global model every k rounds (and the last)"),
        "eval_clients": Field(
            "bool",
            True,
            doc="also score every client's own test split with the model it would use "
            "(eval groups clients/mean and clients/pooled); off for very large fleets",
        ),
    },
    "data": {
        "name": choice("digits", DATA_SOURCES),
        "path": Field("str", "", "must be the data's file or folder (see README, Data)"),
        "factory": Field(
            "str",
            "",
            "must be a user's function 'package.module:function'",
            lambda v: not v or is_plugin(v),
            doc="data.name = python: a function (seed) -> arrays or clients (docs/plugins.md)",
        ),
        "tff_x": Field("str", "pixels", doc="tff: the feature holding the inputs"),
        "tff_y": Field("str", "label", doc="tff: the feature holding the labels"),
        "partition": choice("dirichlet", ("iid", "dirichlet", "shards", "fedmrl")),
        "alpha": number(0.5, 0.0, 1e6, low_open=True, doc="Dirichlet concentration"),
        "classes_per_client": integer(2, 1, "for shards and fedmrl partitions"),
        "test_fraction": number(0.2, 0.0, 1.0, True, True, "global test set, carved out first"),
        "test_seed": integer(
            -1,
            -1,
            "seed of the global test split (-1 = run.seed): one test set for every "
            "run.seed, so that tuning at other seeds never sees it; pooled data sets only",
        ),  # fmt: skip
        "validation": number(
            0.0,
            0.0,
            1.0,
            high_open=True,
            doc="tuning: this fraction of the data, carved "
            "from the training pool, replaces the global test set (which is then used "
            "nowhere); 0 = off; pooled data sets only",
        ),  # fmt: skip
        "proxy_fraction": number(0.1, 0.0, 1.0, high_open=True, doc="server proxy set"),
        "local_test_fraction": number(0.2, 0.0, 1.0, high_open=True, doc="per-client test split"),
        "min_samples": integer(2, 1, "fewest training samples a client may hold", 10**6),
        "synthetic": {
            "alpha": number(1.0, 0.0, 1e3, doc="model heterogeneity: std of u_k (FedProx's)"),
            "beta": number(1.0, 0.0, 1e3, doc="data heterogeneity: std of B_k (FedProx's)"),
            "features": integer(60, 1, maximum=10**5),
            "classes": integer(10, 2, maximum=10**4),
            "samples_log_mean": number(
                4.0,
                -10.0,
                20.0,
                doc="client size (train + test) = floor(lognormal(this, "
                "samples_sigma)) + samples_offset, at most samples_max (FedProx: 4, 2, 50)",
            ),
            "samples_sigma": number(2.0, 0.0, 3.0, doc="sigma of the lognormal client size"),
            "samples_offset": integer(50, 0, "samples added to every client", 10**6),
            "samples_max": integer(10**5, 2, "largest client (train + test)", 10**7),
        },
        "w1": {
            "samples": integer(50, 1, "samples per client (train + own test)", 10**6),
            "noise": number(0.5, 0.0, 1e3, doc="noise sigma around the class pattern"),
        },
    },
    "fleet": {
        "clients": integer(100, 0, "0 = as many as the data's natural partition", 10**9),
        "trace": Field("str", "", "must be a fleet file (.csv or .h5) from `mpifl fleet`"),
        "spread": number(0.3, 0.0, 3.0, doc="lognormal sigma of profiles inside a device class"),
        "deal": choice(
            "random",
            ("random", "by_data"),
            "random: client k gets device k; by_data: the devices dealt so that each class "
            "holds about its share of the training data (mpifl/fleet/deal.py)",
        ),  # fmt: skip
        "classes": DEVICE_FIELDS,
    },
    "model": {
        "arch": Field(
            "str",
            "cnn",
            "must be 'mlp', 'cnn' or a user's model 'package.module:factory'",
            lambda v: v in ("mlp", "cnn") or is_plugin(v),
            doc="mlp, cnn, or a plugin: a function (input_shape, n_classes, width) -> "
            "torch.nn.Module (docs/plugins.md)",
        ),
        "width": number(1.0, 0.0, 1.0, low_open=True, doc="width multiplier of hidden layers"),
        "hidden": positive_list("int", [64], "MLP hidden sizes", maximum=MAX_UNITS),
        "channels": positive_list("int", [16, 32], "CNN conv channels, one per block", MAX_UNITS),
        "fc": integer(64, 1, "CNN hidden fully connected units", MAX_UNITS),
        "kernel": Field(
            "int", 3, "must be an odd integer in [1, 31]", lambda v: 1 <= v <= 31 and v % 2 == 1
        ),
        "norm": choice("none", ("none", "group", "layer")),
        "groups": integer(4, 1, "GroupNorm groups"),
    },
    "train": {
        "epochs": integer(1, 1, maximum=10**4),
        "batch_size": integer(16, 1, maximum=10**6),
        "lr": number(0.05, 0.0, 1e3, low_open=True),
        "momentum": number(0.0, 0.0, 1.0, high_open=True),
        "weight_decay": number(0.0, 0.0, 1e3),
        "channels_last": Field(
            "bool", True, doc="CNNs trained one by one: NHWC memory layout (faster on CPU)"
        ),
        "group": integer(
            256,
            1,
            "most clients trained as one batched computation (1 = one at a time); speed "
            "only: a client's result does not depend on its group",
            4096,
        ),
        "precision": choice(
            "fp32",
            ("fp32", "bf16"),
            doc="bf16: autocast of local training on CPU (weights, "
            "updates and aggregation stay fp32); clients run at their class's bf16 speed",
        ),
    },
    "round": {
        "cohort": integer(10, 1, "clients sampled per round", 10**9),
        "deadline": number(
            math.inf, 0.0, low_open=True, doc="virtual seconds; inf = none", allow_inf=True
        ),
        "overcommit": number(
            1.0, 1.0, 100.0, doc="sample cohort x overcommit, keep the first cohort"
        ),
        "interval": number(
            0.0,
            0.0,
            1e9,
            doc="virtual s from a round's start to the next one's (a round that takes "
            "longer delays it); 0 = the next starts when a round ends",
        ),  # fmt: skip
        "partial_work": Field(
            "bool",
            False,
            doc="a client that would miss the deadline trains the local "
            "steps that fit before it and sends that update (status partial)",
        ),
    },
    "selection": {
        "name": Field(
            "str",
            "uniform",
            doc="which clients a synchronous round samples: uniform, "
            "oort, power_of_choice, energy, or a plugin 'package.module:Class'",
        ),
        "candidates": number(
            2.0, 1.0, 1000.0, doc="power_of_choice, energy: d = ceil(candidates x sampled) drawn"
        ),
        "exploration": number(0.9, 0.0, 1.0, doc="oort: initial share of explored clients"),
        "exploration_decay": number(0.95, 0.0, 1.0, doc="oort: its factor per round"),
        "exploration_min": number(0.2, 0.0, 1.0, doc="oort: its floor"),
        "penalty": number(2.0, 0.0, 100.0, doc="oort: straggler penalty exponent alpha"),
        "cutoff": number(
            0.7, 0.0, 1.0, doc="oort: exploit clients above this share of the n-th best utility"
        ),
        "clip": number(0.98, 0.0, 1.0, doc="oort: statistical utility clipped at this quantile"),
        "preferred_percentile": number(
            10.0,
            0.0,
            100.0,
            doc="oort: the preferred round duration's percentile of the "
            "known durations (100: none)",
        ),
        "pacer_step": integer(20, 1, "oort: rounds per pacer window", 10**6),
        "pacer_delta": number(5.0, 0.0, 100.0, doc="oort: percentile step of the pacer"),
        "sample_window": number(
            5.0,
            1.0,
            1000.0,
            doc="oort: explore among the sample_window x k largest unexplored clients",
        ),
    },
    "energy": {
        "batteries": Field(
            "bool",
            True,
            doc="battery-powered devices (a class's battery > 0) drain, harvest and decline "
            "when low; off: energy is still recorded, no battery is tracked",
        ),
        "threshold": number(
            0.15,
            0.0,
            1.0,
            high_open=True,
            doc="a device declines (status low_battery) below this fraction of its capacity",
        ),  # fmt: skip
        "resume": number(
            0.2, 0.0, 1.0, doc="... until its charge is back above this fraction (>= threshold)"
        ),
    },
    "algorithm": {
        "name": Field("str", "fedavg"),
    },
    "asynchronous": {
        "concurrency": integer(
            10, 1, "asynchronous methods (fedbuff, fedasync): clients training at once", 10**7
        ),
        "dispatch": choice(
            "arrival",
            ("arrival", "step"),
            doc="when a freed slot gets a new client: as the update arrives (FedBuff), or "
            "when the server publishes its next model",
        ),
    },
    "emulation": {
        "mode": choice("virtual", ("virtual", "throttled")),
        "time_scale": number(1.0, 0.0, 1e3, low_open=True, doc="throttled: wall s per virtual s"),
        "memory": choice("analytic", ("analytic", "measured", "both")),
        "rlimit_data": Field(
            "int",
            0,
            f"must be 0 (none) or an integer >= {MIN_RLIMIT_DATA} bytes",
            lambda v: v == 0 or v >= MIN_RLIMIT_DATA,
            doc="per-rank RLIMIT_DATA backstop, bytes; 0 = none",
        ),
        "availability": choice("bernoulli", ("bernoulli", "always", "diurnal", "trace")),
        "diurnal_amplitude": number(0.5, 0.0, 1.0),
        "diurnal_period": number(86400.0, 0.0, 1e9, low_open=True, doc="virtual s of one cycle"),
        "slot": number(900.0, 0.0, 1e9, low_open=True, doc="diurnal: s per availability draw"),
    },
    "aggregation": {
        "frac_bits": Field("int", 40, "must be an integer in [16, 48]", lambda v: 16 <= v <= 48),
    },
    "checkpoint": {
        "every": integer(0, 0, "write a checkpoint every k rounds; 0 = only on SIGTERM"),
    },
    "state": {
        "cache_bytes": integer(2**30, 1, "client-state bytes kept in RAM per rank"),
    },
    "faults": {
        "raise_on_rank": integer(-1, -1, "inject an exception on this rank (-1 = never)"),
        "raise_at_round": integer(-1, -1, "round (from 1) of the injected exception; -1: none"),
    },
    "callbacks": {
        "plugins": Field(
            "list[str]",
            [],
            f"must be a list of at most {MAX_LIST} user callbacks 'package.module:Class'",
            lambda v: len(v) <= MAX_LIST and all(map(is_plugin, v)),
            doc="your callbacks, 'package.module:Class' (docs/plugins.md)",
        ),
        "early_stopping": {
            "metric": Field(
                "str",
                "test_accuracy",
                "must name a round's figure: a rounds column (test_accuracy, train_loss, ...), "
                "eval/<group>/loss, eval/<group>/accuracy or server/<name> (docs/results.md)",
                is_metric_name,
                doc="the figure watched (docs/results.md, Callbacks)",
            ),
            "mode": choice("max", ("max", "min"), doc="max: higher is better"),
            "target": Field(
                "float",
                math.inf,
                "must be a finite number, or inf (no target)",
                lambda v: math.isfinite(v) or v == math.inf,
                doc="stop once the metric reaches it (max: >=, min: <=); inf = no target",
            ),
            "patience": integer(
                0, 0, "stop after this many evaluations without improvement; 0 = never", 10**7
            ),
            "min_delta": number(0.0, 0.0, doc="smallest change that counts as an improvement"),
        },
        "csv": {
            "enabled": Field("bool", False, doc="write every round's figures to a CSV file"),
            "path": log_path("the result file's path with .csv"),
        },
        "tensorboard": {
            "enabled": Field(
                "bool",
                False,
                "needs the tensorboard package, which is not installed: pip install "
                "tensorboard (or mpifl[tensorboard])",
                lambda v: not v or find_spec("tensorboard") is not None,
                doc="write every round's figures as TensorBoard event files",
            ),
            "logdir": log_path("the result file's path with .tb"),
        },
    },
}
