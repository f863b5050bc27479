"""Federated learning methods, one module each, built on the method kit (mpifl.kit).

BUILT_IN maps `algorithm.name` to the module and class of each built-in method, imported
only when the method is wanted (a method imports torch); its [algorithm] keys are in
mpifl.config.algorithms, so that reading a job needs no torch. docs/methods.md documents
each method. A user's method is a plugin: `algorithm.name = "package.module:Class"`, or the
name of an installed `mpifl.methods` entry point (docs/plugins.md).
"""

from __future__ import annotations

import importlib
import inspect
from functools import cache
from typing import TYPE_CHECKING

from mpifl.config.algorithms import ALGORITHMS
from mpifl.config.fields import Field
from mpifl.errors import ConfigError, one_of
from mpifl.plugins import installed_method, is_plugin, load_plugin
from mpifl.results.schema import client_metrics_problem

if TYPE_CHECKING:
    from mpifl.kit.method import Method

BUILT_IN: dict[str, str] = {
    "fedavg": "fedavg:FedAvg",
    "fedprox": "fedprox:FedProx",
    "fednova": "fednova:FedNova",
    "scaffold": "scaffold:Scaffold",
    "fedavgm": "fedopt:FedAvgM",
    "fedadagrad": "fedopt:FedAdagrad",
    "fedadam": "fedopt:FedAdam",
    "fedyogi": "fedopt:FedYogi",
    "fedbuff": "fedbuff:FedBuff",
    "fedasync": "fedbuff:FedAsync",
    "submodel": "submodel:SubModel",
    "reft": "reft:REFT",
    "koala": "koala:Koala",
    "fedmrl": "fedmrl:FedMRL",
    "local": "local_only:LocalOnly",
    "standalone": "standalone:Standalone",
    "majority": "majority:Majority",
    "centralized": "centralized:Centralized",
}
"""algorithm.name -> "module:Class" in this package, for every built-in method."""


def method_class(name: str) -> type[Method]:
    """The method called `name`: built in, a plugin ("package.module:Class") or an
    installed entry point; a ConfigError naming what is wrong otherwise."""
    return built_in_method(name) if name in BUILT_IN else plugin_method(name)


@cache
def built_in_method(name: str) -> type[Method]:
    """The class of the built-in method `name` (its module imported on first use)."""
    module, cls = BUILT_IN[name].split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


@cache
def plugin_method(name: str) -> type[Method]:
    """A user's method, imported and checked once per process."""
    found = load_plugin("algorithm.name", name) if is_plugin(name) else installed_method(name)
    if found is None:
        known = one_of(name, BUILT_IN)
        raise ConfigError("algorithm.name", name, f"{known}, or a plugin 'package.module:Class'")
    return _checked(name, found)


def _checked(name: str, found: object) -> type[Method]:
    """A plugin's class, if it is a complete method with valid [algorithm] fields and a
    valid `client_metrics` declaration."""
    from mpifl.kit.method import Method

    if not (isinstance(found, type) and issubclass(found, Method)):
        raise ConfigError("algorithm.name", name, "must name a subclass of mpifl.kit.Method")
    fields = getattr(found, "fields", None)
    if not (isinstance(fields, dict) and all(isinstance(f, Field) for f in fields.values())):
        raise ConfigError(
            "algorithm.name", name, "its `fields` must map key names to mpifl.kit.Field"
        )
    clash = sorted(set(fields) & {"name"})
    if clash:
        raise ConfigError("algorithm.name", name, f"its fields may not be named {clash[0]!r}")
    problem = client_metrics_problem(getattr(found, "client_metrics", None))
    if problem is not None:
        raise ConfigError("algorithm.name", name, problem)
    if inspect.isabstract(found):
        missing = ", ".join(sorted(found.__abstractmethods__))
        raise ConfigError("algorithm.name", name, f"the method does not implement {missing}")
    return found


def method_fields(name: str) -> dict[str, Field]:
    """The method-specific `[algorithm]` keys of method `name` (a built-in's without
    importing it)."""
    return ALGORITHMS[name] if name in BUILT_IN else plugin_method(name).fields


__all__ = ["BUILT_IN", "built_in_method", "method_class", "method_fields"]
