"""A user's model: `model.arch = "package.module:factory"` (docs/plugins.md)."""

from __future__ import annotations

from torch import nn

from mpifl.errors import ConfigError, describe
from mpifl.models.spec import ModelSpec
from mpifl.plugins import load_plugin

SIGNATURE = "factory(input_shape, n_classes, width) -> torch.nn.Module"


def build_plugin_model(spec: ModelSpec) -> nn.Module:
    """The model the factory `spec.arch` builds for the data's shapes at `spec.width`;
    ConfigError naming model.arch if it cannot be called, fails or is not a trainable
    torch module."""
    factory = load_plugin("model.arch", spec.arch)
    if not callable(factory):
        raise ConfigError("model.arch", spec.arch, f"must name a function {SIGNATURE}")
    try:
        model = factory(input_shape=spec.input_shape, n_classes=spec.n_classes, width=spec.width)
    except Exception as exc:  # noqa: BLE001  (the user's code: any failure is theirs)
        raise ConfigError("model.arch", spec.arch, f"the factory failed: {describe(exc)}") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(
            "model.arch", spec.arch, f"returned {type(model).__name__}, not a torch.nn.Module"
        )
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError("model.arch", spec.arch, "built a model without trainable parameters")
    return model
