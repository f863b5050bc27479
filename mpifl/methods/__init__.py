"""Federated learning methods, one module each; a method registers itself by name."""

from __future__ import annotations

from mpifl.config.fields import Field
from mpifl.errors import ConfigError, one_of
from mpifl.methods.base import ClientResult, ClientTask, Method, MethodContext

METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make a method available as `algorithm.name = cls.name`."""
    METHODS[cls.name] = cls
    return cls


def method_class(name: str) -> type[Method]:
    """The registered method called `name`, or a ConfigError listing the known ones."""
    if name not in METHODS:
        raise ConfigError("algorithm.name", name, one_of(name, METHODS))
    return METHODS[name]


def method_fields(name: str) -> dict[str, Field]:
    """The method-specific `[algorithm]` keys of method `name`."""
    return method_class(name).fields


from mpifl.methods import (  # noqa: E402, F401  (register)
    centralized,
    fedavg,
    fedmrl,
    koala,
    local_only,
    majority,
    reft,
    submodel,
)

__all__ = ["METHODS", "ClientResult", "ClientTask", "Method", "MethodContext", "register"]
