"""Building a model for a spec: freshly initialised, or from a seeded stream."""

from __future__ import annotations

from torch import nn

from mpifl.models.cnn import build_cnn
from mpifl.models.mlp import build_mlp
from mpifl.models.plugin import build_plugin_model
from mpifl.models.spec import ModelSpec
from mpifl.plugins import is_plugin
from mpifl.streams import seeded_init

BUILDERS = {"mlp": build_mlp, "cnn": build_cnn}


def build_model(spec: ModelSpec) -> nn.Module:
    """A freshly initialised model for `spec` (uses torch's current RNG for init): a
    built-in architecture, or a user's factory (model.arch = "package.module:factory")."""
    if is_plugin(spec.arch):
        return build_plugin_model(spec)
    return BUILDERS[spec.arch](spec)


def seeded_model(spec: ModelSpec, seed: int, key: int = 0) -> nn.Module:
    """A model for `spec` initialised from the stream (seed, key), whatever rank builds it
    and without touching torch's global random state."""
    with seeded_init(seed, key):
        return build_model(spec)
