"""Model specifications: what to build, hashable so that costs can be cached per spec."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from mpifl.config.sections import ModelConfig
from mpifl.errors import ConfigError


@dataclass(frozen=True)
class ModelSpec:
    """An architecture at a width; `width` scales every hidden layer (ceil(width * size))."""

    arch: str
    input_shape: tuple[int, ...]
    n_classes: int
    width: float = 1.0
    hidden: tuple[int, ...] = (64,)
    channels: tuple[int, ...] = (16, 32)
    fc: int = 64
    kernel: int = 3
    norm: str = "none"
    groups: int = 4

    def scaled(self, size: int) -> int:
        """A hidden size at this spec's width."""
        return max(1, math.ceil(self.width * size))

    def at_width(self, width: float) -> ModelSpec:
        """The same architecture at another width."""
        return replace(self, width=width)


def spec_from_config(model: ModelConfig, input_shape: tuple[int, ...], n_classes: int) -> ModelSpec:
    """The ModelSpec of the `[model]` config section for a data set's shapes."""
    if model.arch == "cnn" and len(input_shape) != 3:
        raise ConfigError(
            "model.arch",
            "cnn",
            f"needs images (channels, height, width); the data's inputs have shape "
            f"{tuple(input_shape)}: use model.arch = 'mlp'",
        )
    return ModelSpec(
        arch=model.arch,
        input_shape=tuple(input_shape),
        n_classes=n_classes,
        width=model.width,
        hidden=tuple(model.hidden),
        channels=tuple(model.channels),
        fc=model.fc,
        kernel=model.kernel,
        norm=model.norm,
        groups=model.groups,
    )
