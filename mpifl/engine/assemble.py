"""Assembling a run from its config: data, fleet, availability, model spec, the method
and the services it is given, and the round planner. Every rank does the same."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from mpifl.comm import Comm
from mpifl.config import Config
from mpifl.data import build_dataset
from mpifl.data.checks import check_fits
from mpifl.data.federated import FederatedData
from mpifl.engine.allocator import malloc_thresholds, set_malloc_thresholds
from mpifl.engine.plan import Planner
from mpifl.engine.throttle import limit_data_segment
from mpifl.errors import ConfigError
from mpifl.fleet import Fleet, build_fleet
from mpifl.fleet.availability import build_availability
from mpifl.fleet.deal import deal_by_data
from mpifl.fleet.energy import build_energy
from mpifl.kit import Distiller, Evaluator, Method, MethodContext
from mpifl.kit.state_store import ClientStateStore, state_root
from mpifl.kit.workload import bf16_speedup, checks_footprint
from mpifl.methods import method_class
from mpifl.models import check_buildable, spec_from_config
from mpifl.plugins import is_plugin


def torch_threads(threads: int) -> int:
    """Torch threads per rank for `run.threads`: the value, else $SLURM_CPUS_PER_TASK,
    else 1."""
    return threads or int(os.environ.get("SLURM_CPUS_PER_TASK") or 1)


def configure_threads(threads: int) -> int:
    """Set torch's intra-op threads (`torch_threads`)."""
    n = torch_threads(threads)
    cores = os.cpu_count() or 1
    if n > cores:
        raise ConfigError("run.threads", n, f"must be <= the {cores} cores of this host")
    torch.set_num_threads(n)
    return n


@dataclass
class Assembly:
    """The parts of one rank's run."""

    threads: int
    data: FederatedData
    fleet: Fleet
    method: Method
    store: ClientStateStore | None  # this rank's client states (stateful methods)
    planner: Planner


def assemble(cfg: Config, comm: Comm, output: Path) -> Assembly:
    """Build every part of a run of `cfg` writing `output`; ConfigError on bad input."""
    if cfg.faults.raise_on_rank >= comm.size:
        raise ConfigError("faults.raise_on_rank", cfg.faults.raise_on_rank,
                          f"must be < the {comm.size} ranks: it would never fire")  # fmt: skip
    threads = configure_threads(cfg.run.threads)
    seed = cfg.run.seed
    check_fits(cfg.fleet.clients)
    data = build_dataset(cfg.data, cfg.fleet.clients, seed)
    check_fits(data.n_clients, data)
    if cfg.round.cohort > data.n_clients:
        raise ConfigError(
            "round.cohort", cfg.round.cohort, f"must be <= the {data.n_clients} clients"
        )
    fleet = build_fleet(cfg.fleet, data.n_clients, seed)
    if cfg.fleet.deal == "by_data":
        fleet = deal_by_data(fleet, data.n_train, seed)
    availability = build_availability(cfg.emulation, fleet, seed)
    if cfg.emulation.rlimit_data:
        limit_data_segment(cfg.emulation.rlimit_data)
    spec = spec_from_config(cfg.model, data.input_shape, data.n_classes)
    check_buildable(spec)
    cls = method_class(cfg.algorithm.name)
    if is_plugin(cfg.model.arch) and not cls.plugin_models:
        raise ConfigError(
            "model.arch", cfg.model.arch, f"algorithm.name = {cfg.algorithm.name!r} builds its "
            "model variants from the mlp or cnn layers; a user's model works with fedavg, "
            "local, centralized and methods that accept it (docs/plugins.md)",
        )  # fmt: skip
    store = None
    if cls.stateful:
        folder = state_root(output) / f"rank{comm.rank}"
        store = ClientStateStore(cfg.state.cache_bytes, folder)
    set_malloc_thresholds(*malloc_thresholds(cfg.emulation.memory, store is not None))
    speedup = bf16_speedup(cfg, fleet)
    distiller = Distiller(comm, cfg.aggregation.frac_bits)
    evaluator = Evaluator(comm, fleet.profiles["device_class"], fleet.class_names)
    ctx = MethodContext(cfg, data, fleet, spec, evaluator, distiller, store, speedup)
    method = cls(ctx)
    planner = Planner(
        seed,
        fleet,
        data.n_train,
        cfg.round,
        availability,
        comm.size,
        check_footprint=checks_footprint(cfg),
        pinned=cls.stateful,
        group_size=method.group_size,
        speedup=speedup,
        epochs=cfg.train.epochs,
        batch_size=cfg.train.batch_size,
        energy=build_energy(fleet, cfg.energy, cfg.emulation.diurnal_period, seed),
    )
    return Assembly(threads, data, fleet, method, store, planner)
