"""Fleet emulation: device classes, client profiles, traces, availability."""

from __future__ import annotations

from mpifl.fleet.profiles import Fleet, generate_fleet


def build_fleet(cfg: object, n_clients: int) -> Fleet:
    """The run's fleet: from `fleet.trace` (client k gets trace device k mod T) or generated."""
    fleet_cfg = cfg.fleet
    if fleet_cfg.trace:
        from mpifl.fleet.traces import load_fleet

        return load_fleet(fleet_cfg.trace).for_clients(n_clients)
    from mpifl.fleet.traces import check_profiles

    classes = cfg.as_dict()["fleet"]["classes"]
    fleet = generate_fleet(n_clients, classes, fleet_cfg.spread, cfg.run.seed)
    check_profiles(fleet, "fleet.classes with fleet.spread (profiles leave float32's range)")
    return fleet


__all__ = ["Fleet", "build_fleet", "generate_fleet"]
