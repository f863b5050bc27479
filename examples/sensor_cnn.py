"""A model plugin: a small 1-D convolutional network for windows of sensor signals.

    [model]
    arch = "examples.sensor_cnn:build"

mpifl calls `build(input_shape=..., n_classes=..., width=...)`: the data's input shape
without the sample axis (here (3, 32)), the number of classes, and the width multiplier
(model.width; methods with width tiers ask for narrower models).
"""

from __future__ import annotations

import math

from torch import nn


class SensorCNN(nn.Module):
    """Two 1-D convolutions over time, global average pooling, a linear classifier."""

    def __init__(self, channels: int, n_classes: int, width: float) -> None:
        super().__init__()
        hidden = max(1, math.ceil(16 * width))
        self.features = nn.Sequential(
            nn.Conv1d(channels, hidden, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.Conv1d(hidden, 2 * hidden, kernel_size=5, padding=2, stride=2),
            nn.ReLU(),
        )
        self.classifier = nn.Linear(2 * hidden, n_classes)

    def forward(self, x):
        return self.classifier(self.features(x).mean(dim=-1))


def build(input_shape: tuple[int, ...], n_classes: int, width: float) -> nn.Module:
    """The network for inputs of shape (channels, time)."""
    if len(input_shape) != 2:
        raise ValueError(f"expects (channels, time) inputs, got {input_shape}")
    return SensorCNN(input_shape[0], n_classes, width)
