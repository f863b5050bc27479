"""User plugins: a model, data set, method or callback named "package.module:attribute"
in a job.

The module is imported from the working directory or PYTHONPATH (every rank imports it;
a callback, rank 0 only).
A job that names a plugin runs the plugin's code, as a script would: treat such job files
like scripts. A method may also be installed under the `mpifl.methods` entry-point group
and named by its entry-point name. docs/plugins.md describes each kind.
"""

from __future__ import annotations

import importlib
import os
import sys
from importlib.metadata import entry_points

from mpifl.errors import ConfigError, describe

ENTRY_POINTS = "mpifl.methods"  # entry-point group of installed methods


def is_plugin(name: str) -> bool:
    """Whether a config value names a plugin ("package.module:attribute")."""
    return ":" in name


def _well_formed(ref: str) -> bool:
    module, _, attribute = ref.partition(":")
    parts = [*module.split("."), *attribute.split(".")]
    return all(part.isidentifier() for part in parts)


def load_plugin(key: str, ref: str) -> object:
    """The object `ref` ("package.module:attribute") names; ConfigError naming `key` if
    the reference is malformed, its module cannot be imported, or it has no such
    attribute."""
    if not _well_formed(ref):
        raise ConfigError(key, ref, "must be 'package.module:attribute' (Python names)")
    module_name, _, attribute = ref.partition(":")
    if os.getcwd() not in sys.path:  # as `python -m` does: the working directory first
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise ConfigError(
                key, ref, f"no module {missing!r} in the working directory or on PYTHONPATH"
            ) from None
        raise ConfigError(key, ref, f"importing {module_name} failed: {describe(exc)}") from None
    except Exception as exc:  # noqa: BLE001  (the user's module: any failure is theirs)
        raise ConfigError(key, ref, f"importing {module_name} failed: {describe(exc)}") from None
    target: object = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ConfigError(key, ref, f"module {module_name} has no {attribute!r}")
        target = getattr(target, part)
    return target


def installed_method(name: str) -> object | None:
    """The class an installed package registers as method `name` under the
    `mpifl.methods` entry-point group, or None."""
    for entry in entry_points(group=ENTRY_POINTS):
        if entry.name == name:
            try:
                return entry.load()
            except Exception as exc:  # noqa: BLE001  (an installed package's import)
                raise ConfigError(
                    "algorithm.name", name, f"the installed entry point failed: {describe(exc)}"
                ) from None
    return None
