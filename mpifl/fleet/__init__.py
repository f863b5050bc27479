"""Fleet emulation: device classes, client profiles, traces, availability."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

from mpifl.fleet.profiles import Fleet, generate_fleet

if TYPE_CHECKING:  # (the config schema imports the fleet's catalogue)
    from mpifl.config.sections import FleetConfig


def build_fleet(fleet_cfg: FleetConfig, n_clients: int, seed: int) -> Fleet:
    """The run's fleet: from `fleet.trace` (client k gets trace device k mod T) or generated."""
    if fleet_cfg.trace:
        from mpifl.fleet.traces import load_fleet

        return load_fleet(fleet_cfg.trace).for_clients(n_clients)
    from mpifl.fleet.traces import check_profiles

    classes = {name: asdict(c) for name, c in fleet_cfg.classes.items()}
    fleet = generate_fleet(n_clients, classes, fleet_cfg.spread, seed)
    check_profiles(fleet, "fleet.classes with fleet.spread (profiles leave float32's range)")
    return fleet


__all__ = ["Fleet", "build_fleet", "generate_fleet"]
