"""Declarative config fields: type, default, allowed values, and the check that enforces them."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mpifl.errors import ConfigError, one_of

REQUIRED: Any = object()

_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
}


@dataclass(frozen=True)
class Field:
    """One config key. `kind` is int/float/str/bool or list[int]/list[float]/list[str]."""

    kind: str
    default: Any = REQUIRED
    rule: str = ""
    check: Callable[[Any], bool] | None = None
    choices: tuple[str, ...] | None = None
    doc: str = ""

    def allowed(self, value: object = None) -> str:
        """Human description of the allowed values (with a "did you mean" for `value`)."""
        if self.choices is not None:
            return one_of(value, self.choices)
        return self.rule or f"must be of type {self.kind}"

    def coerce(self, key: str, value: Any) -> Any:
        """Check `value` for `key`; return it normalised (ints widened to float where asked)."""
        if self.kind.startswith("list["):
            item = self.kind[5:-1]
            if not isinstance(value, list) or not all(_is(item, v) for v in value):
                raise ConfigError(key, value, f"must be a list of {item}")
            value = [float(v) if item == "float" else v for v in value]
        elif not _is(self.kind, value):
            raise ConfigError(key, value, f"must be of type {self.kind}; {self.allowed()}")
        elif self.kind == "float":
            value = float(value)
        if self.choices is not None and value not in self.choices:
            raise ConfigError(key, value, self.allowed(value))
        if self.check is not None and not self.check(value):
            raise ConfigError(key, value, self.allowed())
        return value


def _is(kind: str, value: Any) -> bool:
    if isinstance(value, bool) and kind != "bool":
        return False
    return isinstance(value, _TYPES[kind])


def integer(default: Any, minimum: int, doc: str = "", maximum: int = 2**62) -> Field:
    """An integer in [minimum, maximum]."""
    rule = f"must be an integer >= {minimum}"
    if maximum < 2**62:
        rule = f"must be an integer in [{minimum}, {maximum}]"
    return Field("int", default, rule, lambda v: minimum <= v <= maximum, doc=doc)


def number(
    default: Any,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
    doc: str = "",
    allow_inf: bool = False,
) -> Field:
    """A real number in an interval; open ends exclude the bound. Finite unless
    `allow_inf` (then +inf is also accepted, meaning "none")."""
    lb, hb = ("(" if low_open else "["), (")" if high_open else "]")
    rule = f"must be a finite number in {lb}{low:g}, {high:g}{hb}"
    if high == math.inf:
        rule = f"must be a finite number {'>' if low_open else '>='} {low:g}"
    if allow_inf:
        rule += " or inf"

    def check(v: float) -> bool:
        if allow_inf and v == math.inf:
            return True
        above = v > low if low_open else v >= low
        below = v < high if high_open else v <= high
        return above and below and math.isfinite(v)

    return Field("float", default, rule, check, doc=doc)


def choice(default: str, options: tuple[str, ...], doc: str = "") -> Field:
    """A string from a fixed set."""
    return Field("str", default, choices=options, doc=doc)


MAX_LIST = 64  # longest list a config key may hold


def positive_list(kind: str, default: list, doc: str = "", maximum: float = math.inf) -> Field:
    """A non-empty list (at most MAX_LIST items) of positive finite numbers <= maximum."""
    bound = f" <= {maximum:g}" if maximum < math.inf else ""
    return Field(
        f"list[{kind}]",
        default,
        f"must be a non-empty list of at most {MAX_LIST} positive {kind}s{bound}",
        lambda v: 0 < len(v) <= MAX_LIST and all(0 < x <= maximum and math.isfinite(x) for x in v),
        doc=doc,
    )


def widths(default: list[float], doc: str = "") -> Field:
    """A non-empty list of widths in (0, 1]."""
    return Field(
        "list[float]",
        default,
        f"must be a non-empty list of at most {MAX_LIST} widths in (0, 1]",
        lambda v: 0 < len(v) <= MAX_LIST and all(0 < w <= 1 for w in v),
        doc=doc,
    )


@dataclass(frozen=True)
class NamedTables:
    """A table of user-named sub-tables sharing one field set (e.g. fleet.classes.<name>).

    A sub-table whose name is in `presets` takes the preset's values for keys it omits;
    the whole table defaults to all presets.
    """

    fields: dict[str, Field]
    presets: dict[str, dict[str, Any]]
    max_entries: int = 256
