"""Job configuration: the schema, typed sections generated from it, loading, validation.

Loading needs the method-specific [algorithm] keys of the named method; `mpifl.jobs`
supplies them from the method registry (this package never imports the methods)."""

from mpifl.config.loader import Config, MethodFields, apply_override, load_config, validate

__all__ = ["Config", "MethodFields", "apply_override", "load_config", "validate"]
