"""Multi-layer perceptron with a width multiplier."""

from __future__ import annotations

import math

from torch import nn

from mpifl.models.spec import ModelSpec


def build_mlp(spec: ModelSpec) -> nn.Sequential:
    """Flatten -> [Linear (LayerNorm) ReLU] per hidden size -> Linear."""
    layers: list[nn.Module] = [nn.Flatten()]
    width_in = math.prod(spec.input_shape)
    for size in spec.hidden:
        width_out = spec.scaled(size)
        layers.append(nn.Linear(width_in, width_out))
        if spec.norm == "layer":
            layers.append(nn.LayerNorm(width_out))
        layers.append(nn.ReLU())
        width_in = width_out
    layers.append(nn.Linear(width_in, spec.n_classes))
    return nn.Sequential(*layers)
