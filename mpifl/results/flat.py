"""A result file's config (a nested dict) as dotted keys, without pandas: for comparing
runs (the report's labels, a resumed run against its start)."""

from __future__ import annotations

from typing import Any


def flat_config(config: dict[str, Any], prefix: str = "", classes: bool = False) -> dict[str, Any]:
    """Dotted keys to scalar values (lists become strings); device classes are skipped
    unless `classes`."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        dotted = prefix + key
        if dotted == "fleet.classes" and not classes:
            continue
        if isinstance(value, dict):
            out.update(flat_config(value, dotted + ".", classes))
        else:
            out[dotted] = str(value) if isinstance(value, list) else value
    return out
