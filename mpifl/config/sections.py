"""Typed, frozen config sections: one dataclass per section of the schema.

Generated from mpifl/config/schema.py by `python -m mpifl.config.codegen`; do not edit.
Lists are tuples; [algorithm] holds `name` here and each method's own keys in a subclass
made when a job is loaded (mpifl.config.loader.algorithm_class).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunConfig:
    """[run]"""

    name: str
    # root of every random stream
    seed: int
    rounds: int
    output: str
    # torch threads per rank; 0 = $SLURM_CPUS_PER_TASK or 1
    threads: int
    # evaluate the global model every k rounds (and the last)
    eval_every: int
    # also score every client's own test split with the model it would use (eval groups
    # clients/mean and clients/pooled); off for very large fleets
    eval_clients: bool


@dataclass(frozen=True)
class DataSyntheticConfig:
    """[data.synthetic]"""

    # model heterogeneity: std of u_k (FedProx's)
    alpha: float
    # data heterogeneity: std of B_k (FedProx's)
    beta: float
    features: int
    classes: int
    # client size (train + test) = floor(lognormal(this, samples_sigma)) + samples_offset,
    # at most samples_max (FedProx: 4, 2, 50)
    samples_log_mean: float
    # sigma of the lognormal client size
    samples_sigma: float
    # samples added to every client
    samples_offset: int
    # largest client (train + test)
    samples_max: int


@dataclass(frozen=True)
class DataW1Config:
    """[data.w1]"""

    # samples per client (train + own test)
    samples: int
    # noise sigma around the class pattern
    noise: float


@dataclass(frozen=True)
class DataConfig:
    """[data]"""

    # one of digits, mnist5k, synthetic, w1, npz, mnist, cifar10, cifar100, femnist, tff,
    # python
    name: str
    path: str
    # data.name = python: a function (seed) -> arrays or clients (docs/plugins.md)
    factory: str
    # tff: the feature holding the inputs
    tff_x: str
    # tff: the feature holding the labels
    tff_y: str
    # one of iid, dirichlet, shards, fedmrl
    partition: str
    # Dirichlet concentration
    alpha: float
    # for shards and fedmrl partitions
    classes_per_client: int
    # global test set, carved out first
    test_fraction: float
    # seed of the global test split (-1 = run.seed): one test set for every run.seed, so
    # that tuning at other seeds never sees it; pooled data sets only
    test_seed: int
    # tuning: this fraction of the data, carved from the training pool, replaces the global
    # test set (which is then used nowhere); 0 = off; pooled data sets only
    validation: float
    # server proxy set
    proxy_fraction: float
    # per-client test split
    local_test_fraction: float
    # fewest training samples a client may hold
    min_samples: int
    synthetic: DataSyntheticConfig
    w1: DataW1Config


@dataclass(frozen=True)
class DeviceClassConfig:
    """One [fleet.classes.<name>] table."""

    # mixture weight (normalised over classes)
    weight: float
    # median training speed, FLOP/s
    flops: float
    # median training memory budget, bytes
    memory: float
    # median uplink, bit/s
    uplink: float
    # median downlink, bit/s
    downlink: float
    # median one-way latency, s
    latency: float
    # probability of being online in a round
    availability: float
    # training speed in bf16 relative to fp32 (train.precision = bf16): 1 = no gain (no bf16
    # arithmetic), 2 = native bf16 at twice the fp32 rate
    bf16: float
    # median power while training, W
    train_power: float
    # median power while neither training nor transferring, W
    idle_power: float
    # median power while sending, W
    tx_power: float
    # median power while receiving, W
    rx_power: float
    # median battery capacity, J; 0 = mains
    battery: float
    # median peak harvesting power, W (a half sine over the day); 0 = none
    solar: float
    # starting charge: uniform from this
    charge_min: float
    # ... to this fraction of capacity
    charge_max: float


@dataclass(frozen=True)
class FleetConfig:
    """[fleet]"""

    # 0 = as many as the data's natural partition
    clients: int
    trace: str
    # lognormal sigma of profiles inside a device class
    spread: float
    # random: client k gets device k; by_data: the devices dealt so that each class holds
    # about its share of the training data (mpifl/fleet/deal.py); one of random, by_data
    deal: str
    classes: dict[str, DeviceClassConfig]


@dataclass(frozen=True)
class ModelConfig:
    """[model]"""

    # mlp, cnn, or a plugin: a function (input_shape, n_classes, width) -> torch.nn.Module
    # (docs/plugins.md)
    arch: str
    # width multiplier of hidden layers
    width: float
    # MLP hidden sizes
    hidden: tuple[int, ...]
    # CNN conv channels, one per block
    channels: tuple[int, ...]
    # CNN hidden fully connected units
    fc: int
    kernel: int
    # one of none, group, layer
    norm: str
    # GroupNorm groups
    groups: int


@dataclass(frozen=True)
class TrainConfig:
    """[train]"""

    epochs: int
    batch_size: int
    lr: float
    momentum: float
    weight_decay: float
    # CNNs trained one by one: NHWC memory layout (faster on CPU)
    channels_last: bool
    # most clients trained as one batched computation (1 = one at a time); speed only: a
    # client's result does not depend on its group
    group: int
    # bf16: autocast of local training on CPU (weights, updates and aggregation stay fp32);
    # clients run at their class's bf16 speed; one of fp32, bf16
    precision: str


@dataclass(frozen=True)
class RoundConfig:
    """[round]"""

    # clients sampled per round
    cohort: int
    # virtual seconds; inf = none
    deadline: float
    # sample cohort x overcommit, keep the first cohort
    overcommit: float
    # virtual s from a round's start to the next one's (a round that takes longer delays
    # it); 0 = the next starts when a round ends
    interval: float
    # a client that would miss the deadline trains the local steps that fit before it and
    # sends that update (status partial)
    partial_work: bool


@dataclass(frozen=True)
class SelectionConfig:
    """[selection]"""

    # which clients a synchronous round samples: uniform, oort, power_of_choice, energy, or
    # a plugin 'package.module:Class'
    name: str
    # power_of_choice, energy: d = ceil(candidates x sampled) drawn
    candidates: float
    # oort: initial share of explored clients
    exploration: float
    # oort: its factor per round
    exploration_decay: float
    # oort: its floor
    exploration_min: float
    # oort: straggler penalty exponent alpha
    penalty: float
    # oort: exploit clients above this share of the n-th best utility
    cutoff: float
    # oort: statistical utility clipped at this quantile
    clip: float
    # oort: the preferred round duration's percentile of the known durations (100: none)
    preferred_percentile: float
    # oort: rounds per pacer window
    pacer_step: int
    # oort: percentile step of the pacer
    pacer_delta: float
    # oort: explore among the sample_window x k largest unexplored clients
    sample_window: float


@dataclass(frozen=True)
class EnergyConfig:
    """[energy]"""

    # battery-powered devices (a class's battery > 0) drain, harvest and decline when low;
    # off: energy is still recorded, no battery is tracked
    batteries: bool
    # a device declines (status low_battery) below this fraction of its capacity
    threshold: float
    # ... until its charge is back above this fraction (>= threshold)
    resume: float


@dataclass(frozen=True)
class AlgorithmConfig:
    """[algorithm]"""

    name: str


@dataclass(frozen=True)
class AsynchronousConfig:
    """[asynchronous]"""

    # asynchronous methods (fedbuff, fedasync): clients training at once
    concurrency: int
    # when a freed slot gets a new client: as the update arrives (FedBuff), or when the
    # server publishes its next model; one of arrival, step
    dispatch: str


@dataclass(frozen=True)
class EmulationConfig:
    """[emulation]"""

    # one of virtual, throttled
    mode: str
    # throttled: wall s per virtual s
    time_scale: float
    # one of analytic, measured, both
    memory: str
    # per-rank RLIMIT_DATA backstop, bytes; 0 = none
    rlimit_data: int
    # one of bernoulli, always, diurnal, trace
    availability: str
    diurnal_amplitude: float
    # virtual s of one cycle
    diurnal_period: float
    # diurnal: s per availability draw
    slot: float


@dataclass(frozen=True)
class AggregationConfig:
    """[aggregation]"""

    frac_bits: int


@dataclass(frozen=True)
class CheckpointConfig:
    """[checkpoint]"""

    # write a checkpoint every k rounds; 0 = only on SIGTERM
    every: int


@dataclass(frozen=True)
class StateConfig:
    """[state]"""

    # client-state bytes kept in RAM per rank
    cache_bytes: int


@dataclass(frozen=True)
class FaultsConfig:
    """[faults]"""

    # inject an exception on this rank (-1 = never)
    raise_on_rank: int
    # round (from 1) of the injected exception; -1: none
    raise_at_round: int


@dataclass(frozen=True)
class CallbacksEarlyStoppingConfig:
    """[callbacks.early_stopping]"""

    # the figure watched (docs/results.md, Callbacks)
    metric: str
    # max: higher is better; one of max, min
    mode: str
    # stop once the metric reaches it (max: >=, min: <=); inf = no target
    target: float
    # stop after this many evaluations without improvement; 0 = never
    patience: int
    # smallest change that counts as an improvement
    min_delta: float


@dataclass(frozen=True)
class CallbacksCsvConfig:
    """[callbacks.csv]"""

    # write every round's figures to a CSV file
    enabled: bool
    # '' = the result file's path with .csv; {name} is replaced by run.name
    path: str


@dataclass(frozen=True)
class CallbacksTensorboardConfig:
    """[callbacks.tensorboard]"""

    # write every round's figures as TensorBoard event files
    enabled: bool
    # '' = the result file's path with .tb; {name} is replaced by run.name
    logdir: str


@dataclass(frozen=True)
class CallbacksConfig:
    """[callbacks]"""

    # your callbacks, 'package.module:Class' (docs/plugins.md)
    plugins: tuple[str, ...]
    early_stopping: CallbacksEarlyStoppingConfig
    csv: CallbacksCsvConfig
    tensorboard: CallbacksTensorboardConfig


@dataclass(frozen=True)
class Sections:
    """Every section of a job."""

    run: RunConfig
    data: DataConfig
    fleet: FleetConfig
    model: ModelConfig
    train: TrainConfig
    round: RoundConfig
    selection: SelectionConfig
    energy: EnergyConfig
    algorithm: AlgorithmConfig
    asynchronous: AsynchronousConfig
    emulation: EmulationConfig
    aggregation: AggregationConfig
    checkpoint: CheckpointConfig
    state: StateConfig
    faults: FaultsConfig
    callbacks: CallbacksConfig
