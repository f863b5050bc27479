"""Job files: load or validate a job with the [algorithm] keys of its registered method."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mpifl.config import Config, load_config, validate
from mpifl.methods import method_fields


def load_job(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read a job file, apply `key=value` overrides, validate; InputError on any problem."""
    return load_config(path, method_fields, overrides)


def validate_job(raw: dict[str, Any]) -> Config:
    """Validate a raw job dict (as read from TOML); the typed config."""
    return validate(raw, method_fields)
