"""Federated learning methods, one module each, built on the method kit (mpifl.kit).

METHODS maps `algorithm.name` to the class; docs/methods.md documents each one. A
user's method is a plugin: `algorithm.name = "package.module:Class"`, or the name of an
installed `mpifl.methods` entry point (docs/plugins.md).
"""

from __future__ import annotations

import inspect
from functools import cache

from mpifl.errors import ConfigError, one_of
from mpifl.kit import Field, Method
from mpifl.methods.centralized import Centralized
from mpifl.methods.fedavg import FedAvg
from mpifl.methods.fedbuff import FedAsync, FedBuff
from mpifl.methods.fedmrl import FedMRL
from mpifl.methods.fednova import FedNova
from mpifl.methods.fedopt import FedAdagrad, FedAdam, FedAvgM, FedYogi
from mpifl.methods.fedprox import FedProx
from mpifl.methods.koala import Koala
from mpifl.methods.local_only import LocalOnly
from mpifl.methods.majority import Majority
from mpifl.methods.reft import REFT
from mpifl.methods.scaffold import Scaffold
from mpifl.methods.standalone import Standalone
from mpifl.methods.submodel import SubModel
from mpifl.plugins import installed_method, is_plugin, load_plugin
from mpifl.results.schema import client_metrics_problem

METHODS: dict[str, type[Method]] = {
    cls.name: cls
    for cls in (
        FedAvg,
        FedProx,
        FedNova,
        Scaffold,
        FedAvgM,
        FedAdagrad,
        FedAdam,
        FedYogi,
        FedBuff,
        FedAsync,
        SubModel,
        REFT,
        Koala,
        FedMRL,
        LocalOnly,
        Standalone,
        Majority,
        Centralized,
    )  # fmt: skip
}


def method_class(name: str) -> type[Method]:
    """The method called `name`: built in, a plugin ("package.module:Class") or an
    installed entry point; a ConfigError naming what is wrong otherwise."""
    return METHODS[name] if name in METHODS else plugin_method(name)


@cache
def plugin_method(name: str) -> type[Method]:
    """A user's method, imported and checked once per process."""
    found = load_plugin("algorithm.name", name) if is_plugin(name) else installed_method(name)
    if found is None:
        known = one_of(name, METHODS)
        raise ConfigError("algorithm.name", name, f"{known}, or a plugin 'package.module:Class'")
    return _checked(name, found)


def _checked(name: str, found: object) -> type[Method]:
    """A plugin's class, if it is a complete method with valid [algorithm] fields and a
    valid `client_metrics` declaration."""
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
    """The method-specific `[algorithm]` keys of method `name`."""
    return method_class(name).fields


__all__ = ["METHODS", "method_class", "method_fields"]
