"""Federated learning methods, one module each, built on the method kit (mpifl.kit).

METHODS maps `algorithm.name` to the class; docs/methods.md documents each one.
"""

from __future__ import annotations

from mpifl.errors import ConfigError, one_of
from mpifl.kit import Field, Method
from mpifl.methods.centralized import Centralized
from mpifl.methods.fedavg import FedAvg
from mpifl.methods.fedmrl import FedMRL
from mpifl.methods.koala import Koala
from mpifl.methods.local_only import LocalOnly
from mpifl.methods.majority import Majority
from mpifl.methods.reft import REFT
from mpifl.methods.submodel import SubModel

METHODS: dict[str, type[Method]] = {
    cls.name: cls
    for cls in (FedAvg, SubModel, REFT, Koala, FedMRL, LocalOnly, Majority, Centralized)
}


def method_class(name: str) -> type[Method]:
    """The method called `name`, or a ConfigError listing the known ones."""
    if name not in METHODS:
        raise ConfigError("algorithm.name", name, one_of(name, METHODS))
    return METHODS[name]


def method_fields(name: str) -> dict[str, Field]:
    """The method-specific `[algorithm]` keys of method `name`."""
    return method_class(name).fields


__all__ = ["METHODS", "method_class", "method_fields"]
