"""The job file `mpifl new` writes: the main sections' keys at their defaults, each with
its description from the config schema (so the template cannot drift from the keys)."""

from __future__ import annotations

import textwrap

import tomli_w

from mpifl.config.fields import REQUIRED, Field
from mpifl.config.schema import SCHEMA

SHOWN = ("run", "data", "fleet", "model", "train", "round")


def _comment(field: Field) -> list[str]:
    """The key's description as comment lines (its doc, its rule, its choices)."""
    parts = [field.doc] if field.doc else []
    if field.choices:
        parts.append("one of: " + ", ".join(field.choices))
    elif field.rule and not field.doc:
        parts.append(field.rule)
    return textwrap.wrap("; ".join(parts), 86, initial_indent="# ", subsequent_indent="# ")


def _key(key: str, field: Field, value: object) -> list[str]:
    if value is REQUIRED or value is None:
        return [*_comment(field), f"# {key} = (no default: set it if you use it)"]
    return [*_comment(field), tomli_w.dumps({key: value}).strip()]


def job_text(
    name: str, method: str, fields: dict[str, Field], source: str = "", command: str = ""
) -> str:
    """A valid job named `name` running `method` (its own keys `fields`); `source`: a line
    saying where the method comes from; `command`: how to run it."""
    lines = [
        "# A job written by `mpifl new`. Every key is at its default; change what",
        "# your experiment needs. `mpifl validate` on this file prints every key, including",
        "# the sections not shown here (selection, energy, asynchronous, emulation,",
        "# aggregation, checkpoint, state, faults, callbacks; the README and docs/ explain",
        f"# them). Run: {command}",
    ]
    for section in SHOWN:
        lines += ["", f"[{section}]"]
        for key, field in SCHEMA[section].items():
            if isinstance(field, Field):
                value = name if (section, key) == ("run", "name") else field.default
                lines += _key(key, field, value)
    lines += ["", "[algorithm]"]
    lines += [source] if source else []
    lines += [tomli_w.dumps({"name": method}).strip()]
    for key, field in fields.items():
        lines += _key(key, field, field.default)
    return "\n".join(lines) + "\n"
