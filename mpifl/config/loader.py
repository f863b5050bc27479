"""Load a TOML job, apply `--set` overrides, validate against the schema, resolve defaults."""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
import tomllib
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomli_w

from mpifl.config.fields import REQUIRED, Field, NamedTables
from mpifl.config.schema import FROM_PATH, SCHEMA, Section
from mpifl.config.sections import AlgorithmConfig, Sections
from mpifl.errors import ConfigError, InputError

MethodFields = Callable[[str], dict[str, Field]]  # algorithm.name -> its own [algorithm] keys
_PYTHON_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


@dataclasses.dataclass(frozen=True)
class Config(Sections):
    """A validated job: typed, frozen sections (`cfg.run.rounds`), and the resolved dict."""

    resolved: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_resolved(cls, resolved: dict[str, Any], fields: dict[str, Field]) -> Config:
        """The typed config of a resolved dict whose [algorithm] has `fields` beyond `name`."""
        algorithm = algorithm_class(resolved["algorithm"]["name"], fields)
        sections = {
            key: _typed(algorithm if key == "algorithm" else hint, resolved[key])
            for key, hint in typing.get_type_hints(Sections).items()
        }
        return cls(**sections, resolved=resolved)

    def as_dict(self) -> dict[str, Any]:
        """A deep copy of the resolved config."""
        return copy.deepcopy(self.resolved)

    def to_toml(self) -> str:
        """The resolved config as TOML text (stored in the results)."""
        return tomli_w.dumps(_toml_safe(self.resolved))


def _typed(hint: Any, value: Any) -> Any:
    """`value` (resolved) as the type `hint`: dataclasses, dicts of them, tuples for lists."""
    if dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        return hint(**{k: _typed(hints[k], value[k]) for k in hints})
    origin = typing.get_origin(hint)
    if origin is dict:
        item = typing.get_args(hint)[1]
        return {k: _typed(item, v) for k, v in value.items()}
    if origin is tuple:
        return tuple(value)
    return value


def _python_type(kind: str) -> Any:
    """The type of a Field kind; lists are tuples."""
    if kind.startswith("list["):
        return tuple[_PYTHON_TYPES[kind[5:-1]], ...]
    return _PYTHON_TYPES[kind]


_ALGORITHM_CLASSES: dict[tuple[str, tuple[str, ...]], type[AlgorithmConfig]] = {}


def algorithm_class(name: str, fields: dict[str, Field]) -> type[AlgorithmConfig]:
    """The frozen [algorithm] dataclass of method `name`: `name` plus its own keys."""
    key = (name, tuple(fields))
    if key not in _ALGORITHM_CLASSES:
        members = [(k, _python_type(f.kind)) for k, f in fields.items()]
        title = "".join(part.title() for part in name.split("_"))
        _ALGORITHM_CLASSES[key] = dataclasses.make_dataclass(
            f"{title}AlgorithmConfig", members, bases=(AlgorithmConfig,), frozen=True
        )
    return _ALGORITHM_CLASSES[key]


def _toml_safe(value: Any) -> Any:
    # TOML has inf; tomli_w writes it, but keep None out (TOML has no null).
    if isinstance(value, dict):
        return {k: _toml_safe(v) for k, v in value.items() if v is not None}
    return value


def load_config(
    path: str | Path, method_fields: MethodFields, overrides: list[str] | None = None
) -> Config:
    """Read `path`, apply `key=value` overrides, validate (the [algorithm] keys of the
    named method from `method_fields`); raise InputError on any problem."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"config error: job file not found: {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"config error: {path} is not valid TOML: {exc}") from None
    if not raw:
        raise InputError(
            f"config error: {path} holds no settings; a job names at least its [run] "
            "(jobs/quickstart.toml is a starting point)"
        )
    for item in overrides or []:
        apply_override(raw, item)
    return validate(raw, method_fields)


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Set `a.b.c=value` in `raw`; the value is parsed as TOML, or kept as a bare string."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise InputError(f"config error: --set {item!r}: expected KEY=VALUE, e.g. run.rounds=5")
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()
    parts = key.split(".")
    if parts[:2] == ["fleet", "classes"] and "classes" not in raw.get("fleet", {}):
        # the job uses the built-in catalogue: a --set below it changes one class of it
        raw.setdefault("fleet", {})["classes"] = copy.deepcopy(SCHEMA["fleet"]["classes"].presets)
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(key, value, f"'{part}' is not a table")
        node = child
    old = node.get(parts[-1])
    node[parts[-1]] = _merged(old, value) if isinstance(old, dict) else value


def _merged(old: dict[str, Any], new: Any) -> Any:
    """`new` laid over `old` key by key (tables merge, other values replace)."""
    if not isinstance(new, dict):
        return new
    out = dict(old)
    for key, value in new.items():
        out[key] = _merged(out[key], value) if isinstance(out.get(key), dict) else value
    return out


def validate(raw: dict[str, Any], method_fields: MethodFields) -> Config:
    """Validate a raw job dict; the typed config with every default filled in."""
    schema = copy.copy(SCHEMA)
    algorithm = raw.get("algorithm", {})
    if not isinstance(algorithm, dict):
        raise ConfigError("algorithm", algorithm, "must be a table")
    name = algorithm.get("name", SCHEMA["algorithm"]["name"].default)
    if not isinstance(name, str):
        raise ConfigError("algorithm.name", name, "must be a string naming a method")
    fields = method_fields(name)
    schema["algorithm"] = {**SCHEMA["algorithm"], **fields}
    resolved = _section(raw, schema, "")
    _cross_checks(resolved)
    return Config.from_resolved(resolved, fields)


def _section(raw: Any, schema: Section, prefix: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(prefix.rstrip("."), raw, "must be a table")
    _reject_unknown(raw, schema, prefix)
    out: dict[str, Any] = {}
    for key, spec in schema.items():
        full = prefix + key
        if isinstance(spec, dict):
            out[key] = _section(raw.get(key, {}), spec, full + ".")
        elif isinstance(spec, NamedTables):
            out[key] = _named_tables(raw.get(key), spec, full)
        elif key in raw:
            out[key] = spec.coerce(full, raw[key])
        elif spec.default is REQUIRED:
            raise ConfigError(full, "<missing>", "is required; " + spec.allowed())
        else:
            out[key] = spec.default
    return out


def _named_tables(raw: Any, spec: NamedTables, key: str) -> dict[str, dict[str, Any]]:
    if raw is None:  # every preset, as written in the catalogue
        raw = {name: {} for name in spec.presets}
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(key, raw, "must be a non-empty table of named sub-tables")
    if len(raw) > spec.max_entries:
        raise ConfigError(key, f"<{len(raw)} tables>", f"allows at most {spec.max_entries}")
    out = {}
    for name, table in raw.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{key}.{name}", table, "must be a table")
        _reject_unknown(table, spec.fields, f"{key}.{name}.")
        preset = spec.presets.get(name, {})
        entry = {}
        for field_name, field in spec.fields.items():
            full = f"{key}.{name}.{field_name}"
            if field_name in table:
                entry[field_name] = field.coerce(full, table[field_name])
            elif field_name in preset:
                entry[field_name] = preset[field_name]
            elif field.default not in (None, REQUIRED):
                entry[field_name] = field.default
            else:
                raise ConfigError(
                    full,
                    "<missing>",
                    f"is required for a class not in the catalogue ({', '.join(spec.presets)})",
                )
        out[name] = entry
    return out


RETIRED = {  # keys of earlier versions -> what replaced them
    "train.vectorize": "was removed: a client's result no longer depends on how clients "
    "are grouped; train.group sets how many train as one batched computation (1 = one at "
    "a time)",
}


def _reject_unknown(raw: dict[str, Any], schema: dict[str, Any], prefix: str) -> None:
    for key in raw:
        if prefix + key in RETIRED:
            raise ConfigError(prefix + key, raw[key], RETIRED[prefix + key])
        if key not in schema:
            close = difflib.get_close_matches(key, list(schema), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            where = f"[{prefix.rstrip('.')}]" if prefix else "the top level"
            allowed = ", ".join(schema)
            raise ConfigError(
                prefix + key, raw[key], f"unknown key{hint}; {where} allows: {allowed}"
            )


def _cross_checks(cfg: dict[str, Any]) -> None:
    data, fleet, rnd = cfg["data"], cfg["fleet"], cfg["round"]
    if fleet["clients"] and rnd["cohort"] > fleet["clients"]:
        raise ConfigError(
            "round.cohort", rnd["cohort"], f"must be <= fleet.clients ({fleet['clients']})"
        )
    if rnd["partial_work"] and not math.isfinite(rnd["deadline"]):
        raise ConfigError(
            "round.partial_work", True, "needs a finite round.deadline (the time the steps fit in)"
        )
    if data["name"] in FROM_PATH and not data["path"]:
        raise ConfigError("data.path", "", f"is required when data.name = '{data['name']}'")
    if data["name"] in FROM_PATH and not Path(data["path"]).exists():
        raise ConfigError("data.path", data["path"], "no such file or folder")
    if data["path"] and Path(data["path"]).exists():
        where = Path(data["path"])
        if not (where.is_file() or where.is_dir()):  # a FIFO or a device never ends
            raise ConfigError("data.path", data["path"], "must be a regular file or folder")
    if data["name"] == "synthetic" and cfg["model"]["arch"] == "cnn":
        raise ConfigError(
            "model.arch", "cnn", "must be 'mlp' or a plugin for data.name = 'synthetic'"
        )
    if (data["name"] == "python") != bool(data["factory"]):
        raise ConfigError(
            "data.factory", data["factory"], "is required when data.name = 'python', and "
            "read only then (a function 'package.module:function', docs/plugins.md)",
        )  # fmt: skip
    if data["test_fraction"] + data["proxy_fraction"] >= 1.0:
        raise ConfigError(
            "data.proxy_fraction",
            data["proxy_fraction"],
            f"must be < 1 - data.test_fraction ({1 - data['test_fraction']:.3g})",
        )
    if sum(c["weight"] for c in fleet["classes"].values()) <= 0:
        raise ConfigError("fleet.classes", "weights", "at least one class needs weight > 0")
    for name, c in fleet["classes"].items():
        if c["charge_min"] > c["charge_max"]:
            raise ConfigError(f"fleet.classes.{name}.charge_min", c["charge_min"],
                              f"must be <= charge_max ({c['charge_max']})")  # fmt: skip
    energy = cfg["energy"]
    if cfg["selection"]["name"] == "energy" and not energy["batteries"]:
        raise ConfigError("selection.name", "energy", "needs energy.batteries = true")
    if energy["resume"] < energy["threshold"]:
        raise ConfigError("energy.resume", energy["resume"],
                          f"must be >= energy.threshold ({energy['threshold']})")  # fmt: skip
    init = cfg["algorithm"].get("server_init")
    if init and not Path(init).is_file():
        raise ConfigError("algorithm.server_init", init, "file not found")
    if cfg["model"]["norm"] == "group":
        _check_groups(cfg["model"])
    run = cfg["run"]
    unknown = set(re.findall(r"\{([^{}]*)\}", run["output"])) - {"name"}
    if unknown:
        others = ", ".join(f"{{{u}}}" for u in sorted(unknown))
        raise ConfigError("run.output", run["output"], f"may hold only the placeholder {{name}}, "
                          f"not {others}")  # fmt: skip
    run["output"] = run["output"].replace("{name}", run["name"])
    faults = cfg["faults"]
    if (faults["raise_on_rank"] >= 0) != (faults["raise_at_round"] >= 1):
        raise ConfigError("faults.raise_on_rank", faults["raise_on_rank"],
                          "and faults.raise_at_round are set together (a rank and a round "
                          "from 1), or neither: one alone never fires")  # fmt: skip
    if faults["raise_at_round"] > run["rounds"]:
        why = f"must be <= run.rounds ({run['rounds']}): it would never fire"
        raise ConfigError("faults.raise_at_round", faults["raise_at_round"], why)
    _check_callbacks(cfg["callbacks"], run["name"])


def _check_callbacks(callbacks: dict[str, Any], name: str) -> None:
    """Paths of the logs (with {name} substituted) only where they are written, and
    early-stopping keys only when it is on."""
    for table, key in (("csv", "path"), ("tensorboard", "logdir")):
        section = callbacks[table]
        if section[key] and not section["enabled"]:
            raise ConfigError(
                f"callbacks.{table}.{key}", section[key],
                f"is read only when callbacks.{table}.enabled = true",
            )  # fmt: skip
        section[key] = section[key].replace("{name}", name)
    stopping = callbacks["early_stopping"]
    if stopping["target"] == math.inf and not stopping["patience"]:
        fields = SCHEMA["callbacks"]["early_stopping"]
        for key, field in fields.items():
            if stopping[key] != field.default:
                raise ConfigError(
                    f"callbacks.early_stopping.{key}", stopping[key],
                    "has no effect: early stopping is on only with a target or a patience",
                )  # fmt: skip


def _check_groups(model: dict[str, Any]) -> None:
    widths = [math.ceil(model["width"] * c) for c in model["channels"]]
    for w in widths:
        if w % model["groups"]:
            raise ConfigError(
                "model.groups",
                model["groups"],
                f"must divide every conv width {widths} when model.norm = 'group'",
            )
