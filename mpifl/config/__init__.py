"""Job configuration: schema, loading, validation."""

from mpifl.config.loader import Config, apply_override, load_config, validate

__all__ = ["Config", "apply_override", "load_config", "validate"]
