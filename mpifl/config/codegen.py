"""Generate mpifl/config/sections.py, the typed config sections, from the schema.

`python -m mpifl.config.codegen` rewrites the file; tests/test_config.py checks that it
is current, so the schema stays the one place where a key is declared.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from mpifl.config.fields import Field, NamedTables
from mpifl.config.schema import SCHEMA, Section

TARGET = Path(__file__).with_name("sections.py")
HEADER = '''"""Typed, frozen config sections: one dataclass per section of the schema.

Generated from mpifl/config/schema.py by `python -m mpifl.config.codegen`; do not edit.
Lists are tuples; [algorithm] holds `name` here and each method's own keys in a subclass
made when a job is loaded (mpifl.config.loader.algorithm_class).
"""

from __future__ import annotations

from dataclasses import dataclass'''


def python_type(kind: str) -> str:
    """The annotation of a Field kind: int, float, str, bool or a tuple of one of them."""
    if kind.startswith("list["):
        return f"tuple[{kind[5:-1]}, ...]"
    return kind


def class_name(path: str) -> str:
    """`data.synthetic` -> `DataSyntheticConfig`; the top level is `Sections`."""
    if not path:
        return "Sections"
    return "".join(part.title().replace("_", "") for part in path.split(".")) + "Config"


def _field(key: str, field: Field) -> list[str]:
    """A field's line, after its doc and choices as wrapped comments."""
    note = field.doc
    if field.choices:
        note = f"{note}; " if note else ""
        note += "one of " + ", ".join(field.choices)
    comments = textwrap.wrap(note, 86) if note else []
    return [*(f"    # {c}" for c in comments), f"    {key}: {python_type(field.kind)}"]


def _fields_class(name: str, doc: str, fields: dict[str, Field]) -> str:
    lines = ["", "", "", "@dataclass(frozen=True)", f"class {name}:", f'    """{doc}"""', ""]
    for key, field in fields.items():
        lines += _field(key, field)
    return "\n".join(lines)


def _classes(section: Section, path: str) -> list[str]:
    out: list[str] = []
    lines = ["", "", "", "@dataclass(frozen=True)", f"class {class_name(path)}:"]
    lines += [f'    """[{path}]"""' if path else '    """Every section of a job."""', ""]
    for key, spec in section.items():
        full = f"{path}.{key}" if path else key
        if isinstance(spec, dict):
            out += _classes(spec, full)
            lines.append(f"    {key}: {class_name(full)}")
        elif isinstance(spec, NamedTables):
            entry = "DeviceClassConfig"
            out.append(_fields_class(entry, f"One [{full}.<name>] table.", spec.fields))
            lines.append(f"    {key}: dict[str, {entry}]")
        else:
            lines += _field(key, spec)
    return [*out, "\n".join(lines)]


def generate() -> str:
    """The text of sections.py for the current schema."""
    return HEADER + "".join(_classes(SCHEMA, "")) + "\n"


if __name__ == "__main__":
    TARGET.write_text(generate())
    print(f"wrote {TARGET}", file=sys.stderr)
