"""Small CNN family with a width multiplier (no running batch statistics)."""

from __future__ import annotations

import math

from torch import nn

from mpifl.errors import ConfigError
from mpifl.models.spec import ModelSpec


def build_cnn(spec: ModelSpec) -> nn.Sequential:
    """[Conv (norm) ReLU MaxPool2] per channel count -> Linear(fc) ReLU -> Linear."""
    c_in, h, w = spec.input_shape
    layers: list[nn.Module] = []
    for channels in spec.channels:
        c_out = spec.scaled(channels)
        layers.append(nn.Conv2d(c_in, c_out, spec.kernel, padding=spec.kernel // 2))
        if spec.norm == "group":
            layers.append(nn.GroupNorm(math.gcd(spec.groups, c_out), c_out))
        elif spec.norm == "layer":
            layers.append(nn.GroupNorm(1, c_out))
        layers += [nn.ReLU(), nn.MaxPool2d(2)]
        c_in, h, w = c_out, h // 2, w // 2
        if h == 0 or w == 0:
            raise ConfigError(
                "model.channels",
                list(spec.channels),
                f"{len(spec.channels)} pooling blocks are too many for input {spec.input_shape}",
            )
    fc = spec.scaled(spec.fc)
    layers += [nn.Flatten(), nn.Linear(c_in * h * w, fc), nn.ReLU(), nn.Linear(fc, spec.n_classes)]
    return nn.Sequential(*layers)
