"""Model families (MLP, CNN) with width multipliers, and their measured training costs."""

from __future__ import annotations

from torch import nn

from mpifl.models.cnn import build_cnn
from mpifl.models.cost import ModelCost, measure_cost
from mpifl.models.mlp import build_mlp
from mpifl.models.spec import ModelSpec, spec_from_config

BUILDERS = {"mlp": build_mlp, "cnn": build_cnn}


def build_model(spec: ModelSpec) -> nn.Module:
    """A freshly initialised model for `spec` (uses torch's current RNG for init)."""
    return BUILDERS[spec.arch](spec)


__all__ = ["ModelCost", "ModelSpec", "build_model", "measure_cost", "spec_from_config"]
